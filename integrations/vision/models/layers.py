"""Building blocks shared by the model families: stems, MLPs, input checks, the classifier base class."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from timm.layers import DropPath
from torch import nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ConvStem",
    "TokenMlp",
    "ConvMlp",
    "TransformerBlock",
    "drop_path_rates",
    "ImageClassifier",
    "ConvStemTokenClassifier",
    "check_model_options",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def check_model_options(
    img_size: int, num_classes: int, in_chans: int, drop_rate: float, drop_path_rate: float
) -> None:
    """Validate the options every family shares, naming the offending argument."""
    for name, value, low in (("img_size", img_size, 1), ("in_chans", in_chans, 1), ("num_classes", num_classes, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    for name, value in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")


class ConvStem(nn.Module):
    """Convolutional patch embedding of Xiao et al. (2021), "Early convolutions help transformers see better".

    ``log2(patch_size)`` 3×3 stride-2 convolutions (padding 1, each followed by BatchNorm and ReLU)
    with widths ..., dim/4, dim/2, dim (dim/8, dim/4, dim/2, dim for the default ``patch_size=16``), then
    a 1×1 convolution to ``dim``: an ``s × s`` image becomes an ``s/p × s/p`` grid of ``dim``-wide
    features (``s`` must be divisible by ``p``).

    Args:
        in_chans: image channels.
        dim: output width; must be divisible by ``patch_size / 2``.
        patch_size: total stride ``p``: 4, 8 or 16 (small images use 8 to keep a finer token grid).
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int = 16) -> None:
        super().__init__()
        if patch_size not in (4, 8, 16):
            raise ValueError(f"patch_size must be 4, 8 or 16, got {patch_size!r}")
        n = patch_size.bit_length() - 1
        if dim % 2 ** (n - 1) != 0:
            raise ValueError(f"dim must be divisible by {2 ** (n - 1)} for the convolutional stem, got {dim}")
        self.patch_size = patch_size
        widths = [in_chans] + [dim // 2 ** (n - 1 - i) for i in range(n)]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers.append(nn.Conv2d(dim, dim, 1))
        self.proj = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_chans, s, s)`` images to ``(B, dim, s/p, s/p)`` feature maps."""
        return self.proj(x)


class TokenMlp(nn.Module):
    """Token-wise two-layer perceptron: y = W₂ GELU(W₁ x + b₁) + b₂, with dropout after each layer.

    Args:
        dim: token width.
        hidden_dim: hidden width.
        drop: dropout probability.
    """

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to tokens ``(B, N, dim)``."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class ConvMlp(nn.Module):
    """RVT's convolutional MLP over the token grid (Mao et al. 2021).

    With tokens laid out as an ``h × w`` image and BN the (eval: affine) batch normalisation,

        y = BN₃(W₂ ⋆ GELU(BN₂(D ⋆ GELU(BN₁(W₁ ⋆ x))))),

    where W₁, W₂ are 1×1 convolutions (dim → hidden → dim) and D is a 3×3 depth-wise convolution.

    Args:
        dim: token width.
        hidden_dim: hidden width.
        grid_size: token grid ``(h, w)``.
        drop: dropout probability (after the first activation and at the output).
    """

    def __init__(self, dim: int, hidden_dim: int, grid_size: tuple[int, int], drop: float = 0.0) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1)
        self.bn1 = nn.BatchNorm2d(hidden_dim)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim)
        self.bn2 = nn.BatchNorm2d(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1)
        self.bn3 = nn.BatchNorm2d(dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to tokens ``(B, h·w, dim)``."""
        batch, tokens, channels = x.shape
        height, width = self.grid_size
        if tokens != height * width:
            raise ValueError(f"x must have {height * width} tokens ({height}x{width} grid), got {tokens}")
        x = x.transpose(1, 2).reshape(batch, channels, height, width)
        x = self.drop(self.act(self.bn1(self.fc1(x))))
        x = self.act(self.bn2(self.dwconv(x)))
        x = self.drop(self.bn3(self.fc2(x)))
        return x.flatten(2).transpose(1, 2)


def drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
    """Stochastic-depth rates rising linearly over the blocks: r_i = drop_path_rate · i / depth, i = 0 … depth−1."""
    return [drop_path_rate * i / depth for i in range(depth)]


class TransformerBlock(nn.Module):
    """Pre-norm transformer block with two residual branches:

        x ← x + DropPath(mixer(LN₁(x))),    x ← x + DropPath(mlp(LN₂(x))).

    The attribute names (``norm1``, ``attn``, ``norm2``, ``mlp``) are those of the original RVT / VARS code.

    Args:
        dim: token width.
        mixer: the token mixer, ``(B, N, dim) -> (B, N, dim)``.
        mlp: the channel MLP, ``(B, N, dim) -> (B, N, dim)``.
        drop_path: stochastic-depth probability of both branches.
        norm_eps: epsilon of the two LayerNorms.
    """

    def __init__(
        self, dim: int, mixer: nn.Module, mlp: nn.Module, drop_path: float = 0.0, norm_eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = mixer
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to tokens ``(B, N, dim)``."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ImageClassifier(nn.Module, ABC):
    """Shared behaviour of the families: input checks, the classifier head and timm's model interface.

    ``forward(x) = head(forward_head_features(forward_features(x)))``; subclasses implement
    :meth:`forward_features` (images → pooled, normalised features ``(B, num_features)``).

    Args:
        img_size: the side of the square input images the model is built for.
        in_chans: image channels.
        num_classes: classes of the linear head (0 means no head: the features are returned).
        num_features: width of the pooled features.
        drop_rate: dropout probability before the head.
    """

    def __init__(self, img_size: int, in_chans: int, num_classes: int, num_features: int, drop_rate: float) -> None:
        super().__init__()
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = num_features
        self.head_drop = nn.Dropout(drop_rate)
        self.head: nn.Module = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = {
            "input_size": (in_chans, img_size, img_size),
            "num_classes": num_classes,
            "interpolation": "bicubic",
            "crop_pct": 0.875,
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "first_conv": "patch_embed.proj.0",
            "classifier": "head",
        }
        self.default_cfg = self.pretrained_cfg

    def check_images(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` unless ``x`` is a ``(B, in_chans, img_size, img_size)`` batch."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
        expected = (self.in_chans, self.img_size, self.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"images must have shape (B, {expected[0]}, {expected[1]}, {expected[2]}) for this model "
                f"(built with in_chans={self.in_chans}, img_size={self.img_size}), got {tuple(x.shape)}"
            )

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, in_chans, img_size, img_size)`` → pooled features ``(B, num_features)``."""

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooled features ``(B, num_features)`` → logits ``(B, num_classes)`` (or the features if ``pre_logits``)."""
        features = self.head_drop(features)
        return features if pre_logits else self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, in_chans, img_size, img_size)`` → logits ``(B, num_classes)``."""
        self.check_images(x)
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The linear classification head."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head by a fresh ``Linear(num_features, num_classes)`` (``nn.Identity`` for 0).

        Args:
            num_classes: new number of classes.
            global_pool: accepted for timm compatibility; only ``None``, ``""`` or ``"avg"`` are valid.
        """
        if global_pool not in (None, "", "avg"):
            raise ValueError(f"global_pool must be 'avg' (the only pooling these models use), got {global_pool!r}")
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        self.num_classes = num_classes
        device = next(self.parameters()).device
        self.head = nn.Linear(self.num_features, num_classes, device=device) if num_classes > 0 else nn.Identity()


class ConvStemTokenClassifier(ImageClassifier):
    """Shared body of the token families on a convolutional stem (DeiT*, GFNet*): stem → tokens + a learned position
    embedding → ``self.blocks`` → LayerNorm → average pooling.

    Subclasses call :meth:`_build_stem` in their constructor, then set ``self.blocks`` and ``self.norm`` and call
    :meth:`_init_weights`.
    """

    def _build_stem(self, img_size: int, in_chans: int, embed_dim: int, patch_size: int, drop_rate: float) -> None:
        """The convolutional stem of stride ``patch_size``, the ``(img_size/patch_size)²`` token grid and its
        position embedding."""
        if patch_size not in (4, 8, 16):
            raise ValueError(f"patch_size must be 4, 8 or 16, got {patch_size!r}")
        if img_size % patch_size != 0:
            raise ValueError(f"img_size must be divisible by {patch_size} (the stem's stride), got {img_size}")
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = ConvStem(in_chans, embed_dim, patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size[0] * self.grid_size[1], embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)

    def _init_weights(self) -> None:
        """Truncated-normal(0.02) position embedding and linear weights, zero biases (as in DeiT and GFNet)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameters trained without weight decay."""
        return {"pos_embed"}

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images → final normalised tokens ``(B, N, embed_dim)``."""
        self.check_images(x)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = self.pos_drop(x + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images → average of the final tokens ``(B, embed_dim)``."""
        return self.forward_tokens(x).mean(dim=1)

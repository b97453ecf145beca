"""The built-in demo data suite: procedural objects on real textures, written in the real benchmark layouts.

``generate_demo_suite(root)`` writes a small, learnable, seeded object-recognition suite (train / val,
ImageNet-C / -R / -Sketch, PACS, VOC and MIT1003 counterparts) that the benchmark runners read exactly
as they read the real data sets; ``save_contact_sheet(root, path)`` draws examples of every split.
"""

from .contact_sheet import save_contact_sheet
from .shapes import SHAPE_NAMES, ObjectPose, object_mask
from .suite import (
    GENERATOR_VERSION,
    PACS_DOMAINS,
    RENDITION_STYLES,
    DemoSuiteConfig,
    DemoSuiteInfo,
    generate_demo_suite,
    load_demo_suite_info,
)

__all__ = [
    "SHAPE_NAMES",
    "ObjectPose",
    "object_mask",
    "GENERATOR_VERSION",
    "PACS_DOMAINS",
    "RENDITION_STYLES",
    "DemoSuiteConfig",
    "DemoSuiteInfo",
    "generate_demo_suite",
    "load_demo_suite_info",
    "save_contact_sheet",
]

// Render the math that pymdownx.arithmatex (generic mode) wraps in .arithmatex elements, with the KaTeX copy
// served from this site (docs/javascripts/katex/, vendored by docs/scripts/vendor_katex.py): no network needed.
function renderArithmatex(root) {
  root.querySelectorAll(".arithmatex").forEach((element) => {
    if (element.dataset.katexRendered) return;
    const display = element.tagName === "DIV";
    let tex = element.textContent.trim();
    if (display && tex.startsWith("\\[") && tex.endsWith("\\]")) tex = tex.slice(2, -2);
    if (!display && tex.startsWith("\\(") && tex.endsWith("\\)")) tex = tex.slice(2, -2);
    katex.render(tex, element, { displayMode: display, throwOnError: false, strict: "ignore" });
    element.dataset.katexRendered = "true";
  });
}

if (typeof document$ !== "undefined") {
  document$.subscribe(({ body }) => renderArithmatex(body));
} else {
  document.addEventListener("DOMContentLoaded", () => renderArithmatex(document.body));
}

"""Markdown tables of every provider's options, generated from the option specs (README section)."""

from __future__ import annotations

from providers import provider_class
from providers.options import COMMON_OPTIONS, Option

TITLES = {"s3": "S3 and S3-compatible (`s3://bucket/prefix`)", "az": "Azure Blob (`az://container/prefix`)",
          "gs": "Google Cloud Storage (`gs://bucket/prefix`)", "file": "Local disk (`file:///abs/dir`, `file:rel/dir`)"}


def _default(name: str, opt: Option, scheme: str) -> str:
    cls = provider_class(scheme)
    if name == "part_size":
        return f"{cls.default_part_size >> 20} MiB"
    if name == "concurrency":
        return str(cls.default_concurrency)
    if name == "single_request_max":
        return f"{cls.default_single_request_max >> 20} MiB"
    if name == "file_mode":
        return oct(opt.default)
    return "" if opt.default is None else f"`{opt.default}`".lower() if isinstance(opt.default, bool) \
        else f"`{opt.default}`"


def options_markdown() -> str:
    out = []
    for scheme, title in TITLES.items():
        spec = {**provider_class(scheme).options_spec, **COMMON_OPTIONS}
        out += [f"#### {title}", "", "| option | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, opt in spec.items():
            kind = opt.kind if not opt.choices else " \\| ".join(f"`{c}`" for c in opt.choices)
            label = f"`{name}`" + (f" (secret; or `{name}_env`)" if opt.secret else "")
            out.append(f"| {label} | {kind} | {_default(name, opt, scheme)} | {opt.doc.replace('|', '/')} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(options_markdown())

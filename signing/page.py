"""Render the mobile signing page (`sign_page.html`, package data beside this module) with every inserted
value HTML-escaped."""

from __future__ import annotations

import html
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

# Read through importlib.resources so it is found in a wheel as in a checkout; it lives with its
# reader, so no lower layer reads a file of a higher one (the page's script and style are still
# served by the web layer, from handlers/static, at `static_prefix`).
TEMPLATE: Traversable = files("signing").joinpath("sign_page.html")
_SLOT = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")

# The consent statement is versioned: the evidence stores the version the signer ticked.
CONSENT_VERSION = "2025-01"
CONSENT_TEXT = {
    "zh": "我已阅读并同意上述文件内容，同意以电子签名方式签署，电子签名与手写签名具有同等法律效力。",
    "en": "I have read and agree to the document above, and I agree to sign it electronically; "
          "the electronic signature has the same legal effect as a handwritten one.",
}

STRINGS = {
    "zh": {
        "html_lang": "zh-CN", "signer_label": "签署人", "doc_heading": "请阅读文件", "pad_heading": "请在下方手写签名",
        "pad_hint": "在此处签名", "undo": "撤销", "clear": "清除", "submit": "确认签署",
        "msg_consent": "请先勾选“我已阅读并同意”。", "msg_empty": "请先在签名区手写签名。",
        "msg_trivial": "签名过于简单（如一个点或一条直线），请手写您的姓名。",
        "msg_sending": "正在提交…", "msg_done": "签署完成，谢谢。", "msg_failed": "提交失败，请稍后重试。",
        "page_label": "第 {n} 页", "download_label": "下载已签署的文件",
    },
    "en": {
        "html_lang": "en", "signer_label": "Signer", "doc_heading": "Please read the document",
        "pad_heading": "Sign by hand below", "pad_hint": "Sign here", "undo": "Undo", "clear": "Clear",
        "submit": "Sign", "msg_consent": "Please tick “I have read and agree” first.",
        "msg_empty": "Please sign in the box first.",
        "msg_trivial": "That mark is too simple (a dot or a straight line). Please write your name.",
        "msg_sending": "Submitting…", "msg_done": "Signed. Thank you.",
        "msg_failed": "Could not submit. Please try again later.", "page_label": "Page {n}",
        "download_label": "Download the signed document",
    },
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_sign_page(*, title: str, employee_name: str, doc_images: list[str], submit_url: str, token: str,
                     lang: str = "zh", consent_version: str = CONSENT_VERSION,
                     static_prefix: str = "/static", template_path: Path | Traversable | None = None) -> str:
    """The complete HTML page. `doc_images` are URLs of the page images, in order."""
    if lang not in STRINGS:
        raise ValueError(f"unsupported language {lang!r}")
    s = STRINGS[lang]
    images = "\n".join(
        f'<img class="doc-page" src="{_e(url)}" alt="{_e(s["page_label"].format(n=i))}" loading="lazy">'
        for i, url in enumerate(doc_images, 1)
    )
    values: dict[str, str] = {k: _e(v) for k, v in s.items()}
    values.update(
        title=_e(title), employee_name=_e(employee_name), submit_url=_e(submit_url), token=_e(token),
        consent_text=_e(CONSENT_TEXT[lang]), consent_version=_e(consent_version),
        static_prefix=_e(static_prefix.rstrip("/")), doc_images=images,  # already escaped per attribute
    )
    source = (template_path or TEMPLATE).read_text(encoding="utf-8")

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise KeyError(f"sign page template uses unknown slot {key!r}")
        return values[key]

    return _SLOT.sub(sub, source)

"""Shared fixtures for the signing tests: key material, a sample context and a realistic signature."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from signing.keys import KeyMaterial, load_or_create_keys


def signature_payload(width: int = 360, height: int = 200) -> dict:
    """Three wavy strokes with plausible timing, like a short cursive name."""
    strokes = []
    t = 0.0
    for s in range(3):
        pts = []
        for i in range(60):
            a = i / 59
            x = 40 + s * 100 + a * 80
            y = 100 + 40 * math.sin(a * math.pi * 3 + s) * (1 - a * 0.5)
            t += 8 + (i % 5)
            pts.append({"x": round(x, 2), "y": round(y, 2), "t": t, "p": 0.5})
        strokes.append(pts)
        t += 200
    return {"width": width, "height": height, "strokes": strokes}


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyMaterial:
    return load_or_create_keys(tmp_path_factory.mktemp("data"))


@pytest.fixture
def guarantee_context() -> dict[str, object]:
    return {
        "company_name": "上海示例科技有限公司",
        "employee_name": "张三",
        "id_number": "310101199001011234",
        "position": "销售专员",
        "termination_date": date(2025, 3, 31),
        "backpay_period": "2025年1月至2025年2月",
        "backpay_amount": Decimal("1050.00"),
        "basis_lines": ["月工资 5000.00 元 × 2 个月", "个人缴费比例 10.5%", "5000.00 × 2 × 10.5% = 1050.00 元"],
    }


def pdftotext(pdf: bytes, tmp: Path) -> str:
    import subprocess

    src = tmp / "doc.pdf"
    src.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(src), "-"], capture_output=True, check=True,
                          text=True).stdout

"""mask_pii: what is personal data (masked) and what only looks like it (kept)."""

from __future__ import annotations

import pytest

from rag.privacy import mask_pii

MASKED = [
    # e-mail addresses
    ("пишите на ivan.petrov@example.com", "пишите на [email]"),
    ("Ivan.Petrov+vpn@corp.example.ru, спасибо", "[email], спасибо"),
    ("адрес: иван@почта.рф.", "адрес: [email]."),
    ("(ivan_petrov-2@mail.co.uk)", "([email])"),
    # Russian numbers
    ("тел. +7 (912) 345-67-89", "тел. [phone]"),
    ("+7 912 345 67 89", "[phone]"),
    ("+79123456789", "[phone]"),
    ("+7-912-345-67-89", "[phone]"),
    ("8 (912) 345-67-89", "[phone]"),
    ("8(495)123-45-67", "[phone]"),
    ("8-912-345-67-89", "[phone]"),
    ("8 912 3456789", "[phone]"),
    ("89123456789", "[phone]"),
    ("79123456789", "[phone]"),
    ("8 800 555 35 35", "[phone]"),
    ("8 (3412) 12-34-56", "[phone]"),
    ("8 (34361) 2-34-56", "[phone]"),
    ("(495) 123-45-67", "[phone]"),
    ("912 345-67-89", "[phone]"),
    ("звоните 123-45-67 после обеда", "звоните [phone] после обеда"),
    ("мой номер 8 912 345 67 89.", "мой номер [phone]."),
    ("тел.:+7 912 345-67-89; Иван", "тел.:[phone]; Иван"),
    ("8\u00a0912\u00a0345\u201167\u201189", "[phone]"),
    # international
    ("+1 202 555 0143", "[phone]"),
    ("+44 20 7946 0958", "[phone]"),
    ("+49 30 1234567", "[phone]"),
    ("+375 (29) 123-45-67", "[phone]"),
    # extensions stay, the number itself goes
    ("+7 495 123-45-67 доб. 1234", "[phone] доб. 1234"),
    ("8 (495) 123-45-67, внутр. 512", "[phone], внутр. 512"),
    ("call +44 20 7946 0958 ext. 204", "call [phone] ext. 204"),
    # both in one text
    (
        "Иван, ivan@example.com, 8-912-345-67-89, доб. 77",
        "Иван, [email], [phone], доб. 77",
    ),
]

KEPT = [
    # dates and times
    "12.05.2024",
    "2024-05-12",
    "12/05/2024",
    "12-05-2024",
    "с 12.05.2024 14:30 до 13.05.2024 09:00",
    "10:00-18:00",
    # IP addresses, networks, ports, MAC addresses
    "192.168.1.10",
    "10.0.0.1/24",
    "http://10.20.30.40:8080/portal",
    "00:1A:2B:3C:4D:5E",
    # versions and builds
    "версия 8.3.22.1709",
    "1С 8.3.24.1467, сборка 19045.3803",
    "Windows 10 22H2 (10.0.19045)",
    # error codes
    "ошибка 0x80070005",
    "код 0x800F081F",
    "HRESULT -2147024891",
    "ошибка 80070005",
    # ticket and document numbers
    "заявка INC-0012345",
    "REQ-2024-000123",
    "#1234567",
    "№ 80012345678",
    "заявка 80012345678",
    "ticket 79123456789",
    "счёт 40702810900000012345",
    # other numbers
    "ИНН 7701234567",
    "бюджет 1 234 567 руб.",
    "разрешение 1920x1080",
    "инвентарный номер 0012345",
    "серийный 5CD1234XYZ",
    "80012345678",
    "доб. 1234",
    "внутренний 4512",
    "порт 3389",
    "root@10.0.0.1",
]


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_masks_personal_data(text: str, expected: str) -> None:
    assert mask_pii(text) == expected


@pytest.mark.parametrize("text", KEPT)
def test_keeps_what_only_looks_like_personal_data(text: str) -> None:
    assert mask_pii(text) == text


def test_empty_text() -> None:
    assert mask_pii("") == ""


def test_masking_is_idempotent() -> None:
    once = mask_pii("ivan@example.com, +7 912 345-67-89")
    assert mask_pii(once) == once == "[email], [phone]"

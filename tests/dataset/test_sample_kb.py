"""The sample knowledge base the project ships: dataset/sample_kb.yaml and the xlsx built from it."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from openpyxl import load_workbook

from dataset import SAMPLE_KB
from dataset.build_sample_kb import (
    HEADER,
    SAMPLE_YAML,
    TICKET_TYPES,
    SampleKB,
    SampleKBError,
    SampleRow,
    differences,
    load_sample_kb,
    main,
    parse_sample_kb,
    read_xlsx,
    write_xlsx,
    xlsx_bytes,
)

REQUIRED_LEVEL1 = {
    "Учетные записи и пароли",
    "VPN и удаленный доступ",
    "Электронная почта",
    "Принтеры и сканеры",
    "1С и бизнес-приложения",
    "Заявки на оборудование",
    "Сеть и Wi-Fi",
    "Установка программ",
    "Информационная безопасность",
    "Телефония и видеоконференции",
    "Файловые ресурсы",
}

_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)


@pytest.fixture(scope="module")
def kb() -> SampleKB:
    return load_sample_kb()


def is_russian(text: str) -> bool:
    # Russian questions may quote English error messages, English answers may name a Russian menu item.
    return len(_CYRILLIC.findall(text)) >= 0.1 * len(re.findall(r"\w", text))


# ------------------------------------------------------------------ the committed xlsx is the YAML, built


def test_committed_xlsx_matches_yaml(kb: SampleKB) -> None:
    diffs = differences(kb, read_xlsx(SAMPLE_KB))
    assert not diffs, (
        "dataset/sample_kb.xlsx is out of date: run python -m dataset.build_sample_kb\n" + "\n".join(diffs)
    )


def test_committed_xlsx_has_the_ticket_export_shape(kb: SampleKB) -> None:
    wb = load_workbook(SAMPLE_KB)
    ws = wb.worksheets[0]
    assert len(wb.worksheets) == 1
    assert ws["A1"].value == kb.title
    assert "Выгрузка обращений" in kb.title
    assert [c.value for c in ws[2]] == list(HEADER)
    assert all(c.font.b for c in ws[2]), "header row is bold"
    assert ws.freeze_panes == "A3"
    assert ws.max_row == 2 + len(kb.rows)
    assert isinstance(ws["C3"].value, datetime)
    assert all((ws.column_dimensions[letter].width or 0) >= 12 for letter in "ABCDEFGHIJ")


def test_builder_is_deterministic(kb: SampleKB, tmp_path: Path) -> None:
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    write_xlsx(kb, first)
    write_xlsx(kb, second)
    assert first.read_bytes() == second.read_bytes() == xlsx_bytes(kb)
    assert not differences(kb, read_xlsx(first))


def test_cli_builds_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kb.xlsx"
    assert main(["--out", str(out), "--check"]) == 1  # missing
    assert main(["--out", str(out)]) == 0
    assert main(["--yaml", str(SAMPLE_YAML), "--out", str(out), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


# ------------------------------------------------------------------ content


def test_enough_entries_and_unique_codes(kb: SampleKB) -> None:
    assert len(kb.rows) >= 150
    codes = [row.code for row in kb.rows]
    assert len(set(codes)) == len(codes)


def test_codes_and_ticket_types_agree(kb: SampleKB) -> None:
    for row in kb.rows:
        assert TICKET_TYPES[row.code[:3]] == row.ticket_type, row.code
    assert set(Counter(row.ticket_type for row in kb.rows)) == set(TICKET_TYPES.values())


def test_every_entry_is_complete(kb: SampleKB) -> None:
    for row in kb.rows:
        assert row.description.strip() and row.solution.strip(), row.code
        assert row.subject.strip() and row.group.strip(), row.code
        assert row.categories[0] and row.categories[1], f"{row.code}: at least two category levels"
        assert len(row.solution) >= 150, f"{row.code}: the answer is too short to be actionable"
        assert datetime(2024, 1, 1) <= row.registered < datetime(2026, 1, 1), row.code


def test_required_categories_are_covered(kb: SampleKB) -> None:
    level1 = Counter(row.categories[0] for row in kb.rows)
    assert REQUIRED_LEVEL1 <= set(level1)
    assert all(n >= 5 for n in level1.values()), level1
    assert any(row.categories[2] for row in kb.rows)


def test_both_languages_and_answers_in_the_language_of_the_question(kb: SampleKB) -> None:
    russian = [row for row in kb.rows if is_russian(row.description)]
    share = len(russian) / len(kb.rows)
    assert 0.75 <= share <= 0.92, f"Russian share {share:.0%}"
    for row in kb.rows:
        assert is_russian(row.solution) == is_russian(row.description), f"{row.code}: answer language"


def test_some_answers_are_shared(kb: SampleKB) -> None:
    uses = Counter(row.solution for row in kb.rows)
    shared = {answer: n for answer, n in uses.items() if n > 1}
    assert len(shared) >= 5
    assert max(shared.values()) >= 3
    entries_with_shared = sum(shared.values())
    assert 0.08 <= entries_with_shared / len(kb.rows) <= 0.2


def test_questions_are_not_duplicated(kb: SampleKB) -> None:
    def norm(text: str) -> str:
        return " ".join(re.findall(r"\w+", text.lower()))

    descriptions = Counter(norm(row.description) for row in kb.rows)
    assert [d for d, n in descriptions.items() if n > 1] == []


# ------------------------------------------------------------------ the loader rejects malformed YAML


def _entry(**overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "code": "INC0000001",
        "type": "Инцидент",
        "registered": "2024-05-06 10:15",
        "group": "1-я линия поддержки",
        "subject": "Не печатает принтер",
        "description": "Принтер не печатает.",
        "solution": "Перезапустите очередь печати.",
        "category": ["Принтеры и сканеры", "Печать"],
    }
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}


def _doc(*entries: dict[str, object], answers: dict[str, str] | None = None) -> dict[str, object]:
    return {"title": "Выгрузка", "answers": answers or {}, "entries": list(entries)}


def test_loader_builds_rows_and_resolves_shared_answers() -> None:
    kb = parse_sample_kb(
        _doc(
            _entry(solution=None, answer="restart"),
            _entry(code="REQ0000002", type="Запрос на обслуживание", solution=None, answer="restart"),
            answers={"restart": "Перезагрузите компьютер."},
        )
    )
    assert kb.rows[0] == SampleRow(
        code="INC0000001",
        ticket_type="Инцидент",
        registered=datetime(2024, 5, 6, 10, 15),
        group="1-я линия поддержки",
        subject="Не печатает принтер",
        description="Принтер не печатает.",
        solution="Перезагрузите компьютер.",
        categories=("Принтеры и сканеры", "Печать", ""),
    )
    assert kb.rows[1].solution == kb.rows[0].solution


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_doc(_entry(typo="x")), "unknown keys"),
        (_doc(_entry(description=None)), "missing keys"),
        (_doc(_entry(code="INC12")), "is not like"),
        (_doc(_entry(type="Изменение")), "code prefix"),
        (_doc(_entry(registered="06.05.2024 10:15")), "YYYY-MM-DD"),
        (_doc(_entry(answer="restart")), "exactly one of"),
        (_doc(_entry(solution=None, answer="nope")), "not a key"),
        (_doc(_entry(category=["Принтеры и сканеры"])), "2 or 3 category levels"),
        (_doc(_entry(solution="  ")), "non-empty string"),
        (_doc(_entry(solution="=HYPERLINK(1)")), "must not start"),
        (_doc(_entry(), _entry()), "duplicate codes"),
        (_doc(_entry(), answers={"unused": "Текст."}), "fewer than 2 entries"),
    ],
)
def test_loader_rejects_malformed_entries(doc: dict[str, object], message: str) -> None:
    with pytest.raises(SampleKBError, match=message):
        parse_sample_kb(doc)


def test_load_reports_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kb.yaml"
    path.write_text(yaml.safe_dump(_doc(_entry(code="bad")), allow_unicode=True), encoding="utf-8")
    with pytest.raises(SampleKBError, match=re.escape(str(path))):
        load_sample_kb(path)

"""classify_reply: clear ru/en confirmations and refusals; everything else None."""

from __future__ import annotations

import pytest

from connectors.email.keywords import classify_reply

SOLVED = [
    "да",
    "Да",
    "Да, помогло",
    "Да, помогло, спасибо!",
    "ДА!",
    "Ну да",
    "ага, заработало",
    "решено",
    "Решено, спасибо",
    "Спасибо, помогло!",
    "Спасибо большое, всё заработало.",
    "Всё работает, спасибо",
    "Проблема решена",
    "Вопрос решен, можно закрывать",
    "Помогло",
    "Помог второй способ",
    "Получилось!",
    "yes",
    "Yes!",
    "Yes, thanks",
    "Solved",
    "SOLVED - thanks, the new driver fixed it.",
    "it worked",
    "It worked, thank you!",
    "Thank you! That worked.",
    "Fixed, thanks",
    "Problem solved",
    "The printer works now",
    "All good now, you can close it",
    "Здравствуйте!\nДа, помогло",
]

NOT_SOLVED = [
    "нет",
    "Нет.",
    "Нет, не помогло",
    "не помогло",
    "Не помогло :(",
    "Не решено",
    "Не решено. Ошибка 0x80070005 осталась.",
    "Нет, принтер так и не печатает",
    "К сожалению, нет",
    "К сожалению, не помогло",
    "Спасибо, но не помогло",
    "Ничего не помогло",
    "Всё ещё не работает",
    "Да нет, не помогло",
    "Проблема осталась",
    "Ошибка по-прежнему появляется",
    "Не заработало",
    "no",
    "No.",
    "Nope, same error",
    "not solved",
    "Not fixed",
    "didn't help",
    "Didnt help",
    "It didn’t work",
    "Unfortunately it still does not work",
    "still broken",
    'Still broken, the VPN client says "authentication failed" again.',
    "Doesn't work",
    "Hello\nNo, nothing changed",
]

UNCLEAR = [
    "",
    "   \n\n",
    "спасибо",
    "Спасибо!",
    "Спасибо большое за помощь",
    "Thanks!",
    "Thank you for your help",
    "ok",
    "Хорошо",
    "Помогло?",
    "Did it work?",
    "Не знаю, помогло ли",
    "Попробую завтра",
    "I will try tomorrow",
    "Not sure yet",
    "Ошибки больше нет",  # "no more errors" or "no longer works"? not a keyword answer
    "No longer happens",
    "Yes, but now the scanner fails",
    "Да, но теперь не работает сканер",
    "No, it worked",
    "Please help",
    "Принтер в кабинете 305",
    "Здравствуйте!",
    "Also my mouse is broken? And yes it worked",
    "> да\n> помогло",  # only quoted text
]


@pytest.mark.parametrize("text", SOLVED)
def test_solved(text):
    assert classify_reply(text) == "solved"


@pytest.mark.parametrize("text", NOT_SOLVED)
def test_not_solved(text):
    assert classify_reply(text) == "not_solved"


@pytest.mark.parametrize("text", UNCLEAR)
def test_unclear(text):
    assert classify_reply(text) is None


def test_only_the_first_line_counts():
    assert classify_reply("Здравствуйте, у меня вопрос про отпуск.\nДа, помогло") is None
    assert classify_reply("Нет\nА вообще всё работает") == "not_solved"


def test_negation_does_not_cross_a_comma():
    # "не знаю" is ambiguous; "не" must not reach "помогло" across the comma either way
    assert classify_reply("Не сразу, но помогло") is None


def test_any_mix_of_vocabulary_terminates_with_a_verdict_or_none():
    import random

    vocab = "да нет не ни помогло still not didn't help no more , , спасибо но работает ли yes fixed broken ? .".split()
    rng = random.Random(7)
    for _ in range(3000):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 9)))
        assert classify_reply(text) in ("solved", "not_solved", None)

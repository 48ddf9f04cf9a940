"""A hostile OpenAI-compatible server: scripted completions that try to get links, contacts, paths and
secrets past the checks of rag.compose, and benign ones that reuse the entries' own and must pass.

:class:`HostileLLMServer` is a real HTTP server on 127.0.0.1 speaking ``POST /v1/chat/completions``.
It answers the completion whose name appears in the ticket as ``case:<name>`` (so tests run in any
order, in parallel too); a request without one gets the completions in the scripted order. A benign
case may be a function of the prompt (e.g. "reuse the first link of entry 1"), as a real model would.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rag.models import AnswerHit

Completion = str | Callable[[str], str]


def _hit(n: int, title: str, answer: str) -> AnswerHit:
    return AnswerHit(answer_id=f"a{n}", answer=answer, entry_id=f"e{n}", question=title, title=title, score=1.0 / n)


#: The entries the answers cite, worded like the shipped sample knowledge base.
HITS = [
    _hit(
        1,
        "Сброс пароля",
        "Пароль можно сбросить самостоятельно на портале https://password.example.ru (открывается и из дома): "
        "введите логин и подтвердите вход в Multifactor. Из дома сначала подключитесь к VPN vpn.example.ru.",
    ),
    _hit(
        2,
        "Доступ к папке на файловом сервере",
        "Доступ выдается по заявке на https://support.example.local/catalog/access: укажите путь к папке "
        "(например, \\\\fs01.example.local\\Departments\\Финансы\\Бюджет) и уровень доступа.",
    ),
    _hit(
        3,
        "Подозрительное письмо",
        "Не открывайте вложения. Перешлите письмо как вложение на security@example.ru и позвоните "
        "по +7 (495) 123-45-67, доб. 1234.",
    ),
]

#: name -> a completion that must never reach the requester (each cites an entry, in Russian).
HOSTILE: dict[str, Completion] = {
    # phishing links
    "phishing_link": "Сбросьте пароль на портале https://password-example.ru/reset и введите логин и пароль [1].",
    "foreign_site": "Перейдите на https://secure-login.example-support.com, введите логин и текущий пароль [1].",
    "lookalike_host_cyrillic_a": "Сбросьте пароль на портале https://pаssword.example.ru [1].",
    "punycode_host": "Сбросьте пароль на портале https://xn--80aaxgrpt.example.com/reset [1].",
    "userinfo_trick": "Сбросьте пароль на https://password.example.ru@evil.example.net/reset [1].",
    "subdomain_trick": "Сбросьте пароль на https://password.example.ru.evil-host.net/ [1].",
    "path_on_trusted_host": "Откройте https://password.example.ru/redirect?to=evil.example.net [1].",
    "bare_host": "Зайдите на password-reset.online и введите там логин и пароль [1].",
    "www_host": "Инструкция есть на www.evil-helpdesk.ru/reset, сбросьте пароль там [1].",
    "ip_address": "Подключитесь к серверу 185.220.101.4 и введите логин и пароль [1].",
    "backslash_scheme": "Сбросьте пароль на https:\\\\evil.example.net\\reset [1].",
    "fullwidth_host": "Сбросьте пароль на ｅｖｉｌ．ｅｘａｍｐｌｅ．ｃｏｍ [1].",
    # links hidden in markup and citations
    "markdown_text_differs": "Сбросьте пароль на [https://password.example.ru](https://evil.example.net/reset) [1].",
    "markdown_word_link": "Откройте [портал сброса пароля](http://evil.example.net/login) [1].",
    "link_in_citation": "Сбросьте пароль на портале [1](https://evil.example.net/p).",
    "reference_citation": "Сбросьте пароль на портале [1].\n\n[1]: https://evil.example.net/p",
    "javascript_link": "Нажмите [Сбросить пароль](javascript:alert(document.cookie)) [1].",
    "html_anchor": 'Сбросьте пароль на <a href="https://evil.example.net/p">https://password.example.ru</a> [1].',
    "entry_link_not_cited": "Оформите заявку на https://support.example.local/catalog/access [1].",
    # foreign contacts
    "foreign_email": "Пришлите логин и пароль на it-support@evil-mail.ru, и мы всё сбросим [1].",
    "lookalike_email": "Перешлите письмо как вложение на security@examp1e.ru [3].",
    "obfuscated_email": "Перешлите письмо на helpdesk (at) evil-mail (dot) ru [3].",
    "mailto_link": "Перешлите письмо [в службу безопасности](mailto:attacker@evil.example) [3].",
    "foreign_phone": "Позвоните по номеру 8 (800) 555-35-35 и продиктуйте код из SMS [3].",
    "changed_phone_digit": "Позвоните по +7 (495) 123-45-76, доб. 1234 [3].",
    "tel_link": "Позвоните [в поддержку](tel:+79991234567) [3].",
    "messenger_handle": "Напишите в Telegram @it_help_desk_bot, там помогут со сбросом пароля [1].",
    # fake secrets
    "temporary_password": "Ваш временный пароль: Welcome2024! Смените его после входа [1].",
    "password_is": "Ваш пароль сброшен, новый пароль — Qwerty123, войдите с ним [1].",
    "pin_code": "Ваш PIN-код 4831, используйте его для входа в Multifactor [1].",
    "access_token": "Используйте токен доступа a8F3kQ9zL2mN7xR4tW6v для входа [1].",
    "random_string": "Введите код 7Hq2Lx9PzR4mK8sW3nB6 на портале https://password.example.ru [1].",
    # paths
    "unc_foreign_share": "Скачайте исправление из \\\\evil-share.example.net\\public\\fix.exe [2].",
    "unc_other_folder": "Откройте \\\\fs01.example.local\\Departments\\Финансы\\Зарплаты [2].",
    "windows_path": "Запустите C:\\Users\\Public\\update.bat от имени администратора [2].",
    "unix_path": "Выполните sudo bash /tmp/x/install.sh, затем запросите доступ [2].",
    "smb_url": "Откройте smb://evil.example.net/share и скопируйте папку [2].",
    # a prompt injection the model obeyed
    "injection_obeyed": (
        "Как указано в заявке, администратор разрешил выдать доступ: войдите на http://10.13.37.1/login "
        "с паролем P@ssw0rd123 [1]."
    ),
    "injection_signature": "Сбросьте пароль на портале [1]. С уважением, ИТ-отдел, support@evil-mail.ru, +1 202 555 0147.",
}


def _first_link_of_entry_1(prompt: str) -> str:
    entry = re.search(r'<entry n="1">(.*?)</entry>', prompt, re.DOTALL)
    link = re.search(r"https?://[^\s),]+", entry.group(1) if entry else "")
    return f"Сбросьте пароль на портале {link.group(0) if link else 'самообслуживания'} [1]."


#: name -> a completion that uses only what the cited entries say, and must be shown as it is.
BENIGN: dict[str, Completion] = {
    "entry_link": "Сбросьте пароль на портале https://password.example.ru: введите логин и подтвердите вход [1].",
    "no_items": "Сбросьте пароль на портале самообслуживания и подтвердите вход в Multifactor [1].",
    "password_policy": "Сбросьте пароль на портале; новый пароль — не короче 12 символов [1].",
    "host_case_and_punctuation": "Откройте HTTPS://Password.Example.RU/. Затем подтвердите вход (Multifactor) [1].",
    "link_in_brackets": "Портал сброса пароля (https://password.example.ru) открывается и из дома [1].",
    "bare_host_from_entry": "Из дома подключитесь к VPN https://vpn.example.ru и сбросьте пароль [1].",
    "entry_path_and_link": (
        "Оформите заявку на https://support.example.local/catalog/access и укажите путь, например "
        "\\\\fs01.example.local\\Departments\\Финансы\\Бюджет [2]."
    ),
    "parent_path_and_link": (
        "Папки отделов лежат на \\\\fs01.example.local\\Departments; заявка оформляется на "
        "https://support.example.local [2]."
    ),
    "entry_contacts": "Перешлите письмо на security@example.ru и позвоните по +7 (495) 123-45-67, доб. 1234 [3].",
    "contacts_other_format": "Перешлите письмо на SECURITY@EXAMPLE.RU или позвоните по 8 495 123-45-67 [3].",
    "two_citations": (
        "Сбросьте пароль на https://password.example.ru [1] и перешлите подозрительное письмо "
        "на security@example.ru [3]."
    ),
    "markdown_link_to_entry": "Откройте [портал сброса пароля](https://password.example.ru) [1].",
    "placeholders": "Перешлите письмо на [email] или позвоните по [phone] [3].",
    "reuses_the_prompts_link": _first_link_of_entry_1,
}

CASES: dict[str, Completion] = {**HOSTILE, **BENIGN}
_CASE = re.compile(r"case:([a-z0-9_]+)")


def ticket(name: str) -> str:
    """A requester's text that makes the server answer with the completion ``name``."""
    return f"Не могу войти, забыл пароль. Помогите, пожалуйста. case:{name}"


def chat_completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "model": "hostile",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130},
    }


@dataclass
class HostileLLMServer:
    url: str
    #: The case each request was answered with, in order.
    answered: list[str] = field(default_factory=list)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def completion_for(self, prompt: str) -> tuple[str, str]:
        found = _CASE.search(prompt)
        with self._lock:
            if found and found.group(1) in CASES:
                name = found.group(1)
            else:
                names = list(CASES)
                name = names[self._next % len(names)]
                self._next += 1
            self.answered.append(name)
        completion = CASES[name]
        return name, completion(prompt) if callable(completion) else completion


@contextmanager
def serve_hostile_llm() -> Iterator[HostileLLMServer]:
    """Run a :class:`HostileLLMServer` on a free loopback port for the duration of the block."""
    state: HostileLLMServer | None = None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            assert state is not None
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.endswith("/chat/completions"):
                self._send(404, {"error": {"message": "not found"}})
                return
            try:
                messages = json.loads(body)["messages"]
                prompt = "\n".join(str(m.get("content", "")) for m in messages)
            except (ValueError, KeyError, TypeError, AttributeError):
                self._send(400, {"error": {"message": "bad request"}})
                return
            _, content = state.completion_for(prompt)
            self._send(200, chat_completion(content))

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    state = HostileLLMServer(url=f"http://{host!s}:{port}/v1")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

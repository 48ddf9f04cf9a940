"""Signed confirmation links: round trip, expiry, tampering, binding to suggestion and action."""

import string

import pytest

from helpdesk_errors import HelpdeskError
from plugin.service.links import LinkError, LinkExpired, LinkInvalid, LinkSigner

SECRET = "0123456789abcdef0123456789abcdef"
DAY = 86_400.0
SID = "s-20261124-9f8e7d6c5b4a"  # the shape of a suggestion id: ~16-24 characters


class Clock:
    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def signer(clock):
    return LinkSigner(SECRET, 14 * DAY, "https://ai.example.org/helpdesk/", clock=clock)


@pytest.mark.parametrize("action", ["solved", "not_solved"])
def test_round_trip(signer, clock, action):
    claim = signer.read(signer.token(SID, action))
    assert (claim.suggestion_id, claim.action, claim.issued_at) == (SID, action, clock.now)


def test_url_is_public_url_r_token_and_short_enough_for_mail(signer):
    url = signer.url(SID, "not_solved")
    prefix = "https://ai.example.org/helpdesk/r/"
    assert url.startswith(prefix)
    token = url.removeprefix(prefix)
    assert set(token) <= set(string.ascii_letters + string.digits + "-_.")
    assert len(token) <= 100, len(token)
    assert signer.read(token).action == "not_solved"


def test_valid_until_the_lifetime_then_expired(signer, clock):
    token = signer.token(SID, "solved")
    clock.now += 14 * DAY
    assert signer.read(token).suggestion_id == SID
    clock.now += 1
    with pytest.raises(LinkExpired) as e:
        signer.read(token)
    # The expired token was authentic: the page may name the ticket it was for.
    assert (e.value.claim.suggestion_id, e.value.claim.action) == (SID, "solved")
    assert isinstance(e.value, HelpdeskError)


def test_a_token_signed_in_the_future_is_invalid(signer, clock):
    token = signer.token(SID, "solved")
    clock.now -= 3600
    with pytest.raises(LinkInvalid):
        signer.read(token)


def _flip(token: str, index: int) -> str:
    c = token[index]
    return token[:index] + ("A" if c != "A" else "B") + token[index + 1 :]


def test_flipping_any_character_makes_the_token_invalid(signer):
    token = signer.token(SID, "not_solved")
    payload_end = token.index(".")
    signature_start = token.rindex(".") + 1
    # Payload, timestamp and signature, including the signature's last character, whose spare
    # base64 bits would otherwise let two texts decode to the same signature.
    for index in range(len(token)):
        if token[index] == ".":
            continue
        with pytest.raises(LinkInvalid):
            signer.read(_flip(token, index))
    assert 0 < payload_end < signature_start < len(token)


def test_the_signature_spare_bits_are_checked(signer):
    # 32 signature bytes take 43 base64 characters: the last one carries 2 unused bits, so
    # changing only those decodes to the same bytes. Such a token must still be refused.
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    token = signer.token(SID, "solved")
    twin = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    assert twin != token
    with pytest.raises(LinkInvalid):
        signer.read(twin)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],
        lambda t: t + "A",
        lambda t: t.replace(".", "", 1),
        lambda t: t.rsplit(".", 1)[0],
        lambda t: t + "=",
        lambda t: t[:-1] + "!" + t[-1],
        lambda t: "",
        lambda t: "...",
        lambda t: "not-a-token",
        lambda t: "Привет.мир.токен",
    ],
)
def test_malformed_tokens_are_invalid(signer, mangle):
    with pytest.raises(LinkInvalid):
        signer.read(mangle(signer.token(SID, "solved")))


def test_a_token_for_one_action_cannot_be_used_for_the_other(signer):
    solved = signer.token(SID, "solved")
    not_solved = signer.token(SID, "not_solved")
    assert solved != not_solved
    assert signer.read(solved).action == "solved"
    # Grafting one token's payload onto the other's signature does not verify.
    grafted = not_solved.split(".")[0] + solved[solved.index(".") :]
    with pytest.raises(LinkInvalid):
        signer.read(grafted)


def test_a_token_is_bound_to_its_suggestion(signer):
    a, b = signer.token(SID, "solved"), signer.token(SID + "x", "solved")
    grafted = b.split(".")[0] + a[a.index(".") :]
    with pytest.raises(LinkInvalid):
        signer.read(grafted)


def test_another_secret_cannot_read_it(signer, clock):
    other = LinkSigner("another-secret-of-32-characters!", 14 * DAY, "https://ai.example.org", clock=clock)
    with pytest.raises(LinkInvalid):
        other.read(signer.token(SID, "solved"))


def test_issued_at_keeps_an_earlier_issue_time(signer, clock):
    first = signer.read(signer.token(SID, "solved"))
    clock.now += 10 * DAY
    again = signer.read(signer.token(SID, "not_solved", issued_at=first.issued_at))
    assert again.issued_at == first.issued_at
    clock.now += 5 * DAY
    with pytest.raises(LinkExpired):
        signer.read(signer.token(SID, "not_solved", issued_at=first.issued_at))


@pytest.mark.parametrize("kwargs", [{"secret": ""}, {"lifetime_s": 0}])
def test_refuses_a_signer_without_secret_or_lifetime(kwargs):
    args = {"secret": SECRET, "lifetime_s": DAY, "public_url": "https://x"} | kwargs
    with pytest.raises(LinkError):
        LinkSigner(**args)


@pytest.mark.parametrize("sid, action", [("", "solved"), (SID, "maybe")])
def test_refuses_to_sign_an_empty_id_or_unknown_action(signer, sid, action):
    with pytest.raises(LinkError):
        signer.token(sid, action)

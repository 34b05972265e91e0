"""The redactors of ``sessiontrack.redact``: what each finds, what each leaves alone
(hypothesis properties), and what ``Tracker(redact=...)`` refuses at construction."""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sessiontrack
from sessiontrack import events as ev
from sessiontrack import redact
from sessiontrack._redact import Redaction

# Filler around a secret: letters, spaces and punctuation, no digit and no "@".
_FILLER = st.text(alphabet=string.ascii_letters + " ,;:!?'\"éüß", max_size=30)
_DIGIT = re.compile(r"\d")


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        if redact.luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


def _group(digits: str, seps: list[str]) -> str:
    return digits[0] + "".join(s + d for s, d in zip(seps, digits[1:], strict=False))


@st.composite
def cards(draw: st.DrawFn) -> str:
    n = draw(st.integers(13, 19))
    body = draw(st.text(alphabet=string.digits, min_size=n - 1, max_size=n - 1))
    seps = draw(st.lists(st.sampled_from(["", "", " ", "-"]), min_size=n - 1, max_size=n - 1))
    return _group(_luhn_complete(body), seps)


@st.composite
def phones(draw: st.DrawFn) -> str:
    n = draw(st.integers(7, 15))
    digits = draw(st.text(alphabet=string.digits, min_size=n, max_size=n))
    seps = draw(st.lists(st.sampled_from(["", "", " ", "-", "."]), min_size=n - 1, max_size=n - 1))
    number = draw(st.sampled_from(["", "+"])) + _group(digits, seps)
    if redact.PHONE.check is not None and not redact.PHONE.check(number):
        return "+" + digits  # a date shape: write it as a plain international number
    return number


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.text(alphabet=string.ascii_uppercase, min_size=2, max_size=2))
    bban = draw(st.text(alphabet=string.ascii_uppercase + string.digits, min_size=11, max_size=30))
    moved = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in moved)) % 97
    iban = f"{country}{check:02d}{bban}"
    assert redact.iban_valid(iban)
    if draw(st.booleans()):
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban.lower() if draw(st.booleans()) else iban


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
emails = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
    st.from_regex(r"[A-Za-z0-9._%+-]{1,20}", fullmatch=True),
    st.lists(_LABEL, min_size=1, max_size=3),
    st.from_regex(r"[a-z]{2,6}", fullmatch=True),
)


def _around(redactor: redact.Pattern, secret: str, before: str, after: str) -> None:
    text = f"{before} {secret} {after}"
    assert redactor(text) == f"{before} {redactor.replacement} {after}", secret


# --- each finds what it claims --------------------------------------------------------------


@given(cards(), _FILLER, _FILLER)
def test_card_finds_every_luhn_valid_number(card: str, before: str, after: str) -> None:
    _around(redact.CARD, card, before, after)


@given(phones(), _FILLER, _FILLER)
def test_phone_finds_every_number_of_7_to_15_digits(phone: str, before: str, after: str) -> None:
    _around(redact.PHONE, phone, before, after)


@given(ibans(), _FILLER, st.sampled_from(["", ",", ".", "!"]), _FILLER)
def test_iban_finds_every_checksum_valid_iban(
    iban: str, before: str, mark: str, after: str
) -> None:
    text = f"{before} {iban}{mark} {after}"
    assert redact.IBAN(text) == f"{before} [iban]{mark} {after}"


@given(emails, _FILLER, _FILLER)
def test_email_finds_every_address(email: str, before: str, after: str) -> None:
    _around(redact.EMAIL, email, before, after)


# --- and leaves the rest unchanged ------------------------------------------------------------


@given(st.text())
def test_email_leaves_text_without_an_at_sign(text: str) -> None:
    if "@" not in text:
        assert redact.EMAIL(text) is text


@given(st.text())
def test_phone_leaves_text_with_fewer_than_7_digits(text: str) -> None:
    if len(_DIGIT.findall(text)) < 7:
        assert redact.PHONE(text) == text


@given(st.text(), st.text(alphabet=string.digits, min_size=13, max_size=19))
def test_card_leaves_numbers_that_fail_luhn_and_short_ones(text: str, digits: str) -> None:
    if len(_DIGIT.findall(text)) < 13:
        assert redact.CARD(text) == text
    if not redact.luhn_valid(digits):
        assert redact.CARD(f"no {digits} card") == f"no {digits} card"


@given(ibans(), st.integers(1, 96))
def test_iban_leaves_a_wrong_checksum(iban: str, delta: int) -> None:
    compact = iban.replace(" ", "")
    wrong = f"{(int(compact[2:4]) + delta) % 100:02d}"
    bad = compact[:2] + wrong + compact[4:]
    assert not redact.iban_valid(bad)
    assert redact.IBAN(f"to {bad} now") == f"to {bad} now"


@given(st.text(alphabet=string.ascii_letters + string.punctuation.replace("@", "") + " "))
def test_all_leaves_text_without_digits_or_at_signs(text: str) -> None:
    out = text
    for r in redact.ALL:
        out = r(out)
    assert out == text


# --- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +49 (151) 1234-5678 now", "call [phone] now"),
        ("(030) 1234567", "[phone]"),
        ("555-123-4567.", "[phone]."),
        ("on 2026-12-01 at 10:30", "on 2026-12-01 at 10:30"),
        ("on 01.12.2026", "on 01.12.2026"),
        ("pin 123456", "pin 123456"),
        ("card 4111 1111 1111 1111 ok", "card [card] ok"),
        ("card 4111 1111 1111 1112 no", "card 4111 1111 1111 1112 no"),
        ("iban DE89 3704 0044 0532 0130 00 kind", "iban [iban] kind"),
        ("iban de89370400440532013000.", "iban [iban]."),
        ("mail jane.doe+x@example.co.uk, thanks", "mail [email], thanks"),
        ("ünï@exämple.de", "[email]"),
        ("user@localhost", "user@localhost"),
        (
            "me@x.org, +44 20 7946 0958, GB82 WEST 1234 5698 7654 32, 5500-0000-0000-0004",
            "[email], [phone], [iban], [card]",
        ),
    ],
)
def test_all_on_examples(text: str, expected: str) -> None:
    out = text
    for r in redact.ALL:
        out = r(out)
    assert out == expected


def test_a_long_word_with_an_at_sign_is_linear() -> None:
    text = "x" * 200_000 + " @ " + "y" * 200_000
    assert redact.EMAIL(text) is text or redact.EMAIL(text) == text


# --- the Redaction the tracker builds -----------------------------------------------------------


def test_named_variables_are_replaced_whole_at_any_depth() -> None:
    r = Redaction([redact.variables("card", "dob"), redact.EMAIL])
    data: dict[str, Any] = {
        "variables": '{"card":{"n":1},"order":{"card":42,"note":"a@b.cc"},"dob":null,"x":1}'
    }
    r.report(ev.VARIABLES_CHANGED, data, "h")
    assert data["variables"] == (
        '{"card":"[redacted]","order":{"card":"[redacted]","note":"[email]"},'
        '"dob":"[redacted]","x":1}'
    )


def test_a_placeholder_longer_than_the_column_is_cut() -> None:
    r = Redaction([lambda s: s + "!" * 500])
    data = {"status": "stopped", "node_id": None, "reason": "r" * 10}
    r.report(ev.SESSION_COMPLETED, data, "h")
    assert data["reason"] == ("r" * 10 + "!" * 500)[: sessiontrack.limits.REASON]


def test_a_redactor_returning_no_string_raises_at_the_call_site() -> None:
    r = Redaction([lambda s: None])
    with pytest.raises(TypeError, match="returned NoneType for text"):
        r.report(ev.MESSAGE, {"text": "hi", "payload": None}, "sessiontrack_message")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("PHONE", "redact must be a list"),
        (redact.PHONE, "redact must be a list"),
        (["PHONE"], r"redact\[0\] must be a callable"),
        ([redact.EMAIL, 42], r"redact\[1\] must be a callable"),
        ([re.compile(r"\d+")], r"use redact\.pattern\(\)"),
        ([str], r"redact\[0\] must be a callable"),
    ],
)
def test_tracker_refuses_a_bad_redactor(bad: Any, match: str, tmp_path: Any) -> None:
    with pytest.raises(TypeError, match=match):
        sessiontrack.Tracker(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", redact=bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda: redact.variables(),
        lambda: redact.variables(""),
        lambda: redact.contact("email"),
        lambda: redact.pattern(r"x", 5),  # type: ignore[arg-type]
    ],
)
def test_markers_refuse_bad_arguments(call: Any) -> None:
    with pytest.raises(TypeError):
        call()


_DIGITY = st.text(alphabet=string.digits + string.ascii_letters[:8] + "DEGB +-.()@", max_size=60)


@given(_DIGITY)
def test_the_quick_first_looks_never_change_the_result(text: str) -> None:
    for r in redact.ALL:
        without_hints = type(r)(r.regex, r.replacement, check=r.check)
        assert r(text) == without_hints(text), r


def test_sync_tracker_takes_redact(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}"
    with sessiontrack.SyncTracker(url, redact=[redact.EMAIL, redact.contact()]) as tracker:
        sid = sessiontrack.new_session_id()
        contact = {"phone": "+15550001234", "name": "Ana"}
        tracker.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b", contact=contact)
        tracker.hook.sessiontrack_message(session_id=sid, direction="inbound", text="me@x.org")
        tracker.flush()
        detail = tracker.sessions.get(sid)
        messages = tracker.sessions.messages(sid)
    assert (detail.customer_phone, detail.customer_name) == ("[redacted]", "[redacted]")
    assert [m.text for m in messages] == ["[email]"]


@pytest.fixture
def tracker_options() -> dict[str, Any]:
    return {"redact": [redact.EMAIL]}


@pytest.mark.anyio
async def test_a_stop_reason_is_redacted(tracker: sessiontrack.Tracker, pm: Any) -> None:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b")
    sid2 = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid2, chatbot_id="b")
    await tracker.stop(sid, "ops@example.com", reason="asked by jane@example.org")
    await tracker.stop_many([sid2], principal="ops", reason="asked by joe@example.org")
    detail, detail2 = await tracker.sessions.get(sid), await tracker.sessions.get(sid2)
    assert detail.completion_reason == "asked by [email]"
    assert detail2.completion_reason == "asked by [email]"

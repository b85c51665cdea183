"""Template loading: bundled files, company overrides, and errors that name file, step and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow import DOCUMENT_KINDS, Role, StepKind
from workflow.errors import TemplateError
from workflow.templates import BUNDLED_DIR, load_template, load_templates

BASE = """\
id = "demo"
version = 1
title = { zh = "演示", en = "Demo" }
case_type = "demo"

[policy]
remind_after_hours = 24
alert_after_hours = 72
fallback_after_hours = 168

[[steps]]
id = "first"
title = { zh = "第一步", en = "First" }
ask = { zh = "请确认", en = "Please confirm" }
why = { zh = "原因", en = "Because" }
role = "employee"
kind = "acknowledge"
deadline_hours = 24

[[steps]]
id = "second"
title = { zh = "第二步", en = "Second" }
ask = { zh = "请签字", en = "Please sign" }
why = { zh = "原因", en = "Because" }
role = "employee"
kind = "sign"
documents = ["guarantee_letter"]
depends_on = ["first"]
deadline_hours = 24
"""


def write(tmp_path: Path, text: str, name: str = "demo.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if fragment in line]
    return hits[occurrence - 1]


def error_for(tmp_path: Path, text: str) -> TemplateError:
    path = write(tmp_path, text)
    with pytest.raises(TemplateError) as info:
        load_template(path)
    err = info.value
    assert err.path == path
    assert str(path) in str(err)
    return err


def test_all_bundled_templates_load():
    templates = load_templates()
    assert set(templates) == {"probation", "misconduct", "resignation", "mutual"}
    for template in templates.values():
        assert template.case_type == template.id
        for step in template.steps:
            assert step.title.zh and step.title.en and step.ask.zh and step.why.zh
            assert set(step.documents) <= set(DOCUMENT_KINDS)


def test_probation_matches_case_b():
    t = load_templates()["probation"]
    assert [s.id for s in t.steps] == [
        "application", "performance_review", "hr_check", "handover", "guarantee", "backpay",
        "separation_certificate", "rights_notice",
    ]
    g = t.step("guarantee")
    assert (g.number, g.kind, g.role, g.documents, g.depends_on) == (
        5, StepKind.SIGN, Role.EMPLOYEE, ("guarantee_letter",), ("hr_check",)
    )
    assert g.deadline_hours == 24 and "补缴" in g.why.zh
    assert t.step("backpay").depends_on == ("guarantee",)
    assert t.step("backpay").role is Role.FINANCE
    assert t.step("handover").depends_on == t.step("hr_check").depends_on == ("performance_review",)
    assert set(t.step("separation_certificate").depends_on) == {"backpay", "handover"}
    assert t.step("separation_certificate").documents == ("separation_certificate",)
    assert t.step("rights_notice").depends_on == ("separation_certificate",)


def test_probation_first_step_is_an_acknowledgement_not_a_resignation():
    # The company decides this termination: nothing the employee is asked to submit may read as a request.
    first = load_templates()["probation"].step("application")
    texts = [first.title, first.ask, first.why, *(f.label for f in first.fields)]
    assert not [t.zh for t in texts if "申请" in t.zh or "辞职" in t.zh]
    assert not [t.en for t in texts if "application" in t.en.lower() or "resign" in t.en.lower().replace(
        "not a resignation", "")]
    assert "确认收到解除通知" in first.title.zh and "陈述" in first.title.zh


def test_misconduct_policy_and_fallback_path():
    t = load_templates()["misconduct"]
    notice = t.step("termination_notice")
    assert notice.fallback and notice.documents == ("termination_notice",)
    assert (notice.policy.remind_after_hours, notice.policy.alert_after_hours,
            notice.policy.fallback_after_hours) == (24, 72, 168)
    assert set(t.fallback_only_ids) == {"registered_mail", "newspaper_notice"}
    mail = t.step("registered_mail")
    assert [f.key for f in mail.fields if f.required] == ["delivery_result", "tracking_number", "receipt_scan"]
    assert (mail.notice, mail.encloses) == ("fallback_notice", ("termination_notice", "separation_certificate"))
    assert mail.outcome_field == "delivery_result" and mail.replaces_on == ("delivered",)
    news = t.step("newspaper_notice")
    assert news.depends_on == ("registered_mail",)
    assert dict(news.depends_on_outcome) == {"registered_mail": ("returned", "undeliverable")}
    handover = t.step("handover")
    assert (handover.role, handover.signed_by, handover.documents) == (
        Role.HANDOVER, Role.EMPLOYEE, ("handover_confirmation",))


def test_mutual_has_settlement_agreement_and_parallel_it_finance():
    t = load_templates()["mutual"]
    assert t.step("settlement_agreement").documents == ("settlement_agreement",)
    assert t.step("it_access").depends_on == t.step("final_pay").depends_on == ("handover",)


def test_step_policy_override(tmp_path):
    override = "deadline_hours = 24\npolicy = { alert_after_hours = 12 }\n\n[[steps]]"
    text = BASE.replace("deadline_hours = 24\n\n[[steps]]", override)
    t = load_template(write(tmp_path, text))
    assert t.step("first").policy.alert_after_hours == 12
    assert t.step("first").policy.remind_after_hours == 24
    assert t.step("second").policy.alert_after_hours == 72


def test_toml_syntax_error_names_line_and_step(tmp_path):
    text = BASE.replace('role = "employee"\nkind = "sign"', 'role = "employee\nkind = "sign"')
    err = error_for(tmp_path, text)
    assert "TOML syntax error" in err.problem
    assert err.line == line_of(text, 'role = "employee', occurrence=2)
    assert err.step == "second"
    assert f"line {err.line}" in str(err) and "step 'second'" in str(err)


def test_duplicate_step_id(tmp_path):
    text = BASE.replace('id = "second"', 'id = "first"').replace('depends_on = ["first"]\n', "")
    err = error_for(tmp_path, text)
    assert "duplicate step id" in err.problem
    assert err.step == "first" and err.line == line_of(text, 'id = "first"', occurrence=2)


def test_unknown_dependency(tmp_path):
    text = BASE.replace('depends_on = ["first"]', 'depends_on = ["frist"]')
    err = error_for(tmp_path, text)
    assert "unknown step 'frist'" in err.problem
    assert err.step == "second" and err.line == line_of(text, "depends_on")


def test_dependency_cycle(tmp_path):
    text = BASE.replace('kind = "acknowledge"', 'kind = "acknowledge"\ndepends_on = ["second"]')
    err = error_for(tmp_path, text)
    assert "cycle" in err.problem and "first -> second -> first" in err.problem
    assert err.step == "first" and err.line == line_of(text, 'depends_on = ["second"]')


def test_self_dependency_is_a_cycle(tmp_path):
    text = BASE.replace('depends_on = ["first"]', 'depends_on = ["second"]')
    err = error_for(tmp_path, text)
    assert "cycle" in err.problem and err.step == "second"


def test_bad_enum_value(tmp_path):
    text = BASE.replace('role = "employee"\nkind = "sign"', 'role = "boss"\nkind = "sign"')
    err = error_for(tmp_path, text)
    assert "role" in err.problem and "'boss'" in err.problem
    assert err.step == "second" and err.line == line_of(text, 'role = "boss"')
    text = BASE.replace('kind = "acknowledge"', 'kind = "dance"')
    err = error_for(tmp_path, text)
    assert "kind" in err.problem and err.step == "first" and err.line == line_of(text, "dance")


def test_sign_step_must_list_documents(tmp_path):
    text = BASE.replace('documents = ["guarantee_letter"]\n', "")
    err = error_for(tmp_path, text)
    assert "sign step must list the documents" in err.problem
    assert err.step == "second" and err.line == line_of(text, 'kind = "sign"')


def test_unknown_document_kind(tmp_path):
    text = BASE.replace('"guarantee_letter"', '"guarantee_leter"')
    err = error_for(tmp_path, text)
    assert "unknown document kind 'guarantee_leter'" in err.problem
    assert err.step == "second" and err.line == line_of(text, "guarantee_leter")


@pytest.mark.parametrize(
    ("old", "new", "step", "fragment"),
    [
        ("deadline_hours = 24\n\n", "deadline_hours = 0\n\n", "first", "deadline_hours = 0"),
        ("remind_after_hours = 24", "remind_after_hours = -1", None, "remind_after_hours = -1"),
    ],
)
def test_non_positive_hours(tmp_path, old, new, step, fragment):
    text = BASE.replace(old, new, 1)
    err = error_for(tmp_path, text)
    assert "greater than 0" in err.problem
    assert err.step == step and err.line == line_of(text, fragment)


def test_fallback_only_step_must_not_block_required_steps(tmp_path):
    text = (
        BASE.replace('kind = "acknowledge"', 'kind = "acknowledge"\nfallback = true')
        + """
[[steps]]
id = "mail"
title = { zh = "邮寄", en = "Mail" }
ask = { zh = "寄出", en = "Send" }
why = { zh = "原因", en = "Because" }
role = "hr"
kind = "hr_task"
deadline_hours = 24
required = false
fallback_only = true

[[steps]]
id = "after_mail"
title = { zh = "之后", en = "After" }
ask = { zh = "完成", en = "Finish" }
why = { zh = "原因", en = "Because" }
role = "hr"
kind = "hr_task"
depends_on = ["mail"]
deadline_hours = 24
"""
    )
    err = error_for(tmp_path, text)
    assert "fallback_only step 'mail'" in err.problem
    assert err.step == "after_mail" and err.line == line_of(text, 'depends_on = ["mail"]')


def test_unknown_key_and_missing_key(tmp_path):
    text = BASE.replace('deadline_hours = 24\n\n', 'deadline_hours = 24\ndeadline_days = 1\n\n', 1)
    err = error_for(tmp_path, text)
    assert "deadline_days: unknown key" in err.problem and err.line == line_of(text, "deadline_days")
    text = BASE.replace('ask = { zh = "请签字", en = "Please sign" }\n', "")
    err = error_for(tmp_path, text)
    assert "ask: required key is missing" in err.problem
    assert err.step == "second" and err.line == line_of(text, "[[steps]]", occurrence=2)


def test_not_utf8(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(BASE.encode("gbk"))
    with pytest.raises(TemplateError, match="not UTF-8"):
        load_template(path)


def test_company_override_replaces_bundled_template(tmp_path):
    bundled = (BUNDLED_DIR / "probation.toml").read_text(encoding="utf-8")
    backpay = '\n\n[[steps]]\nid = "backpay"'
    text = bundled.replace("version = 1", "version = 2").replace(
        "deadline_hours = 24" + backpay, "deadline_hours = 12" + backpay
    )
    write(tmp_path, text, "my_probation.toml")
    write(tmp_path, BASE, "demo.toml")
    templates = load_templates([tmp_path])
    assert templates["probation"].version == 2
    assert templates["probation"].step("guarantee").deadline_hours == 12
    assert templates["probation"].source.endswith("my_probation.toml")
    assert templates["misconduct"].source.startswith(str(BUNDLED_DIR))
    assert templates["demo"].case_type == "demo"


def test_later_company_dir_wins(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write(first, BASE)
    write(second, BASE.replace("version = 1", "version = 3"))
    assert load_templates([first, second])["demo"].version == 3


def test_same_id_twice_in_one_folder_is_an_error(tmp_path):
    write(tmp_path, BASE, "a.toml")
    write(tmp_path, BASE, "b.toml")
    with pytest.raises(TemplateError, match=r"already defined by a\.toml"):
        load_templates([tmp_path])


def test_missing_company_folder(tmp_path):
    with pytest.raises(TemplateError, match="does not exist"):
        load_templates([tmp_path / "nope"])


def test_broken_company_template_names_its_file(tmp_path):
    path = write(tmp_path, BASE.replace('"guarantee_letter"', '"contract"'), "acme.toml")
    with pytest.raises(TemplateError) as info:
        load_templates([tmp_path])
    assert info.value.path == path and "acme.toml" in str(info.value)


def test_outcome_keys_are_checked_and_name_the_step(tmp_path):
    # depends_on_outcome on a step not in depends_on
    text = BASE.replace('depends_on = ["first"]', 'depends_on = []\ndepends_on_outcome = { first = ["acknowledged"] }')
    err = error_for(tmp_path, text)
    assert "not in depends_on" in err.problem and err.step == "second"
    # an outcome the dependency never ends with
    text = BASE.replace('depends_on = ["first"]',
                        'depends_on = ["first"]\ndepends_on_outcome = { first = ["returned"] }')
    err = error_for(tmp_path, text)
    assert "never ends as returned" in err.problem and "acknowledged" in err.problem and err.step == "second"
    # outcome_field must be a required choice field
    text = BASE.replace('kind = "acknowledge"', 'kind = "acknowledge"\noutcome_field = "result"')
    err = error_for(tmp_path, text)
    assert "outcome_field" in err.problem and err.step == "first"
    # a choice field without options
    text = BASE.replace('kind = "acknowledge"\ndeadline_hours = 24',
                        'kind = "acknowledge"\ndeadline_hours = 24\n\n[[steps.fields]]\nkey = "result"\n'
                        'label = { zh = "结果", en = "Result" }\ntype = "choice"')
    err = error_for(tmp_path, text)
    assert "needs options" in err.problem and err.step == "first"


def test_outcome_of_a_choice_opens_or_closes_a_step(tmp_path):
    from datetime import UTC, datetime

    from workflow import engine
    from workflow.events import Act

    text = BASE.replace('kind = "acknowledge"\ndeadline_hours = 24',
                        'kind = "acknowledge"\ndeadline_hours = 24\noutcome_field = "result"\n\n[[steps.fields]]\n'
                        'key = "result"\nlabel = { zh = "结果", en = "Result" }\ntype = "choice"\n'
                        'options = [ { value = "yes", label = { zh = "是", en = "Yes" } },'
                        ' { value = "no", label = { zh = "否", en = "No" } } ]')
    text = text.replace('depends_on = ["first"]', 'depends_on = ["first"]\ndepends_on_outcome = { first = ["yes"] }')
    text = text.replace('deadline_hours = 24\n"""', 'deadline_hours = 24\nrequired = false\n"""') + (
        '\n[[steps]]\nid = "third"\ntitle = { zh = "三", en = "Third" }\nask = { zh = "a", en = "a" }\n'
        'why = { zh = "b", en = "b" }\nrole = "hr"\nkind = "hr_task"\ndepends_on = ["second"]\ndeadline_hours = 1\n'
        'required = false\n')
    t = load_template(write(tmp_path, text))
    at = datetime(2025, 1, 6, tzinfo=UTC)
    start = engine.start(t, "c", at).state
    emp = ("e", frozenset({Role.EMPLOYEE}))
    yes = engine.apply(t, start, Act("first", "acknowledge", *emp, {"result": "yes"}, at))
    assert yes.state.steps["second"].status == "active" and yes.state.status == "open"
    no = engine.apply(t, start, Act("first", "acknowledge", *emp, {"result": "no"}, at))
    # "second" is not needed on this branch, and so "third" which waits on it; the case then completes.
    assert [(no.state.steps[s].status, no.state.steps[s].outcome) for s in ("second", "third")] == [
        ("not_needed", "branch"), ("not_needed", "after")]
    assert no.state.status == "completed"

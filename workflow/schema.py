"""Validation of a parsed template file (pydantic for shape, then the graph rules), and compilation
into the engine's FlowTemplate. Knows nothing about files or lines: it reports *where* in the data a
problem is (a pydantic-style location) and the loader turns that into a line number."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from workflow.documents import DOCUMENT_KINDS
from workflow.model import Role, StepKind
from workflow.template import FieldSpec, FlowTemplate, Policy, StepTemplate
from workflow.text import Text

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Hours = Annotated[float, Field(gt=0)]
Loc = tuple[str | int, ...]


class TemplateProblem(Exception):
    def __init__(self, problem: str, *, loc: Loc = (), step: str | None = None, needle: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.loc = loc
        self.step = step
        self.needle = needle  # a literal worth searching for when the key alone is ambiguous


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextIn(_Strict):
    zh: NonEmpty
    en: NonEmpty

    def compile(self) -> Text:
        return Text(self.zh, self.en)


class PolicyIn(_Strict):
    remind_after_hours: Hours = 24
    alert_after_hours: Hours = 72
    fallback_after_hours: Hours = 168
    question_remind_after_hours: Hours = 24
    remind_to: Literal["not_viewed", "everyone"] = "not_viewed"
    remind_before_deadline_hours: Hours | None = None
    business_days: bool = False


class PolicyOverrideIn(_Strict):
    remind_after_hours: Hours | None = None
    alert_after_hours: Hours | None = None
    fallback_after_hours: Hours | None = None
    remind_to: Literal["not_viewed", "everyone"] | None = None
    remind_before_deadline_hours: Hours | None = None
    business_days: bool | None = None


class OptionIn(_Strict):
    value: Identifier
    label: TextIn


class FieldIn(_Strict):
    key: Identifier
    label: TextIn
    type: Literal["text", "textarea", "date", "number", "file", "choice"] = "text"
    required: bool = True
    options: list[OptionIn] = []


class StepIn(_Strict):
    id: Identifier
    title: TextIn
    ask: TextIn
    why: TextIn
    role: Role
    kind: StepKind
    documents: list[str] = []
    depends_on: list[str] = []
    deadline_hours: Hours
    required: bool = True
    fallback: bool = False
    fallback_only: bool = False
    signed_by: Role | list[Role] | None = None
    fields: list[FieldIn] = []
    replaces: list[str] = []
    replaces_on: list[Identifier] = []
    outcome_field: Identifier | None = None
    depends_on_outcome: dict[str, list[Identifier]] = {}
    policy: PolicyOverrideIn | None = None
    items: list[TextIn] = []
    hr_fields: list[FieldIn] = []
    notice: str | None = None
    encloses: list[str] = []

    @property
    def signers(self) -> list[Role]:
        if self.signed_by is None:
            return [self.role]
        return list(self.signed_by) if isinstance(self.signed_by, list) else [self.signed_by]


class TemplateIn(_Strict):
    id: Identifier
    version: Annotated[int, Field(ge=1)]
    title: TextIn
    case_type: Identifier
    policy: PolicyIn = PolicyIn()
    steps: Annotated[list[StepIn], Field(min_length=1)]


def _step_id_at(raw: dict[str, Any], loc: Loc) -> str | None:
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = raw.get("steps")
        if isinstance(steps, list) and loc[1] < len(steps) and isinstance(steps[loc[1]], dict):
            step_id = steps[loc[1]].get("id")
            return step_id if isinstance(step_id, str) else f"#{loc[1] + 1}"
    return None


def _shape(raw: dict[str, Any]) -> TemplateIn:
    try:
        return TemplateIn.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc: Loc = tuple(err["loc"])
        where = ".".join(str(p) for p in (loc[2:] if loc[:1] == ("steps",) and len(loc) > 1 else loc))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("missing",):
            msg = f"{msg} (got {err['input']!r})"
        raise TemplateProblem(f"{where}: {msg}" if where else msg, loc=loc, step=_step_id_at(raw, loc)) from None


def _find_cycle(steps: list[StepIn]) -> list[str] | None:
    deps = {s.id: s.depends_on for s in steps}
    colour: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        path.append(node)
        for nxt in deps.get(node, ()):
            if colour.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if colour.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        colour[node] = 2
        path.pop()
        return None

    for s in steps:
        if s.id not in colour:
            found = visit(s.id)
            if found:
                return found
    return None


def _check_graph(t: TemplateIn) -> None:
    ids: dict[str, int] = {}
    for i, s in enumerate(t.steps):
        if s.id in ids:
            raise TemplateProblem(
                f"duplicate step id (also step {ids[s.id] + 1})", loc=("steps", i, "id"), step=s.id, needle=s.id
            )
        ids[s.id] = i
    by_id = {s.id: s for s in t.steps}
    for i, s in enumerate(t.steps):
        here = ("steps", i)
        for dep in s.depends_on:
            if dep not in ids:
                raise TemplateProblem(
                    f"depends_on names unknown step '{dep}'", loc=(*here, "depends_on"), step=s.id, needle=dep
                )
        for doc in s.documents:
            if doc not in DOCUMENT_KINDS:
                raise TemplateProblem(
                    f"unknown document kind '{doc}' (known: {', '.join(DOCUMENT_KINDS)})",
                    loc=(*here, "documents"), step=s.id, needle=doc,
                )
        if len(set(s.documents)) != len(s.documents):
            raise TemplateProblem("documents lists a kind twice", loc=(*here, "documents"), step=s.id)
        if s.kind is StepKind.SIGN and not s.documents:
            raise TemplateProblem("a sign step must list the documents to sign", loc=(*here, "kind"), step=s.id)
        if s.kind is StepKind.SIGN and s.fields:
            raise TemplateProblem("a sign step cannot ask for fields", loc=(*here, "fields"), step=s.id)
        if s.signed_by is not None and not s.documents:
            raise TemplateProblem("signed_by needs documents to sign", loc=(*here, "signed_by"), step=s.id)
        if isinstance(s.signed_by, list) and not s.signed_by:
            raise TemplateProblem("signed_by lists no one", loc=(*here, "signed_by"), step=s.id)
        if len(set(s.signers)) != len(s.signers):
            raise TemplateProblem("signed_by lists a role twice", loc=(*here, "signed_by"), step=s.id)
        if Role.HR in s.signers and len(s.signers) > 1:
            # HR may add to what such a document says (hr_fields) until the first signature: HR cannot
            # also be one of its parties.
            raise TemplateProblem("HR cannot be one of several signers", loc=(*here, "signed_by"), step=s.id)
        for key, what in (("items", "the lines its document lists"), ("hr_fields", "data for its document")):
            if getattr(s, key) and not s.documents:
                raise TemplateProblem(f"{key} ({what}) needs documents", loc=(*here, key), step=s.id)
        hr_keys = [f.key for f in s.hr_fields]
        if len(set(hr_keys)) != len(hr_keys):
            raise TemplateProblem("hr_fields lists a key twice", loc=(*here, "hr_fields"), step=s.id)
        clash = sorted(set(hr_keys) & {f.key for f in s.fields})
        if clash:
            raise TemplateProblem(f"hr_fields and fields both declare '{clash[0]}'", loc=(*here, "hr_fields"),
                                  step=s.id, needle=clash[0])
        if any(f.required for f in s.hr_fields):
            raise TemplateProblem("hr_fields are additions HR may make, so none can be required",
                                  loc=(*here, "hr_fields"), step=s.id)
        if s.fallback and s.fallback_only:
            raise TemplateProblem(
                "a step cannot both start the fallback and be part of it", loc=(*here, "fallback_only"), step=s.id
            )
        keys = [f.key for f in s.fields]
        if len(set(keys)) != len(keys):
            raise TemplateProblem("fields lists a key twice", loc=(*here, "fields"), step=s.id)
        _check_notice(s, here)
        if s.replaces and not s.fallback_only:
            raise TemplateProblem("only fallback_only steps may replace others", loc=(*here, "replaces"), step=s.id)
        for target in s.replaces:
            if target not in by_id:
                raise TemplateProblem(
                    f"replaces names unknown step '{target}'", loc=(*here, "replaces"), step=s.id, needle=target
                )
            if not by_id[target].fallback:
                raise TemplateProblem(
                    f"replaces step '{target}', which does not start the fallback (fallback = true)",
                    loc=(*here, "replaces"), step=s.id, needle=target,
                )
    for i, s in enumerate(t.steps):
        _check_outcomes(s, ("steps", i), by_id)
    cycle = _find_cycle(t.steps)
    if cycle:
        first = cycle[0]
        raise TemplateProblem(
            "dependency cycle: " + " -> ".join(cycle),
            loc=("steps", ids[first], "depends_on"), step=first, needle=cycle[1],
        )
    _check_fallback_reachability(t, ids)
    if not any(s.required for s in t.steps):
        raise TemplateProblem("no step is required, so a case would complete before anyone acts", loc=("steps",))


_KIND_OUTCOME = {StepKind.APPROVE: "approved", StepKind.CONFIRM: "confirmed", StepKind.ACKNOWLEDGE: "acknowledged",
                 StepKind.FORM: "submitted", StepKind.HR_TASK: "completed", StepKind.SIGN: "signed"}


def _outcomes(s: StepIn) -> set[str]:
    """Every outcome a step can finish with."""
    if s.outcome_field:
        field = next(f for f in s.fields if f.key == s.outcome_field)
        found = {o.value for o in field.options}
    else:
        found = {_KIND_OUTCOME[s.kind]}
    return found | ({"replaced"} if s.fallback else set())


def _check_outcomes(s: StepIn, here: Loc, by_id: dict[str, StepIn]) -> None:
    for f in s.fields:
        if (f.type == "choice") != bool(f.options):
            raise TemplateProblem("a choice field needs options, and only a choice field has them",
                                  loc=(*here, "fields"), step=s.id, needle=f.key)
        values = [o.value for o in f.options]
        if len(set(values)) != len(values):
            raise TemplateProblem("options list a value twice", loc=(*here, "fields"), step=s.id, needle=f.key)
    if s.outcome_field is not None:
        field = next((f for f in s.fields if f.key == s.outcome_field), None)
        if field is None or field.type != "choice" or not field.required:
            raise TemplateProblem("outcome_field must name a required choice field of the step",
                                  loc=(*here, "outcome_field"), step=s.id, needle=s.outcome_field)
    for dep, allowed in s.depends_on_outcome.items():
        if dep not in s.depends_on:
            raise TemplateProblem(f"depends_on_outcome names '{dep}', which is not in depends_on",
                                  loc=(*here, "depends_on_outcome"), step=s.id, needle=dep)
        if not allowed:
            raise TemplateProblem(f"depends_on_outcome lists no outcome of '{dep}'",
                                  loc=(*here, "depends_on_outcome"), step=s.id, needle=dep)
        unknown = sorted(set(allowed) - _outcomes(by_id[dep]))
        if unknown:
            raise TemplateProblem(f"step '{dep}' never ends as {', '.join(unknown)} "
                                  f"(it can end as: {', '.join(sorted(_outcomes(by_id[dep])))})",
                                  loc=(*here, "depends_on_outcome"), step=s.id, needle=unknown[0])
    if s.replaces_on:
        if not s.replaces:
            raise TemplateProblem("replaces_on needs replaces", loc=(*here, "replaces_on"), step=s.id)
        unknown = sorted(set(s.replaces_on) - _outcomes(s))
        if unknown:
            raise TemplateProblem(f"replaces_on names outcomes the step never ends as: {', '.join(unknown)}",
                                  loc=(*here, "replaces_on"), step=s.id, needle=unknown[0])


def _check_fallback_reachability(t: TemplateIn, ids: dict[str, int]) -> None:
    by_id = {s.id: s for s in t.steps}
    if any(s.fallback_only for s in t.steps) and not any(s.fallback for s in t.steps):
        first = next(s for s in t.steps if s.fallback_only)
        raise TemplateProblem(
            "fallback_only steps can never start: no step has fallback = true",
            loc=("steps", ids[first.id], "fallback_only"), step=first.id,
        )
    # A required normal step that waits (directly or through other steps) on a fallback-only step could
    # never complete on the normal path, so every ordinary case would hang.
    via: dict[str, str | None] = {}

    def fallback_dep(step_id: str) -> str | None:
        if step_id in via:
            return via[step_id]
        via[step_id] = None
        for dep in by_id[step_id].depends_on:
            if by_id[dep].fallback_only:
                via[step_id] = dep
                break
            if fallback_dep(dep):
                via[step_id] = via[dep]
                break
        return via[step_id]

    for s in t.steps:
        if s.required and not s.fallback_only:
            culprit = fallback_dep(s.id)
            if culprit:
                raise TemplateProblem(
                    f"required step depends on fallback_only step '{culprit}', which only runs on the fallback path",
                    loc=("steps", ids[s.id], "depends_on"), step=s.id, needle=culprit,
                )


def _check_notice(s: StepIn, here: Loc) -> None:
    """`notice` (the letter or newspaper text HR sends for a fallback step) and what it encloses."""
    if s.notice is None:
        if s.encloses:
            raise TemplateProblem("encloses needs notice (the document they are enclosed with)",
                                  loc=(*here, "encloses"), step=s.id)
        return
    if not s.fallback_only:
        raise TemplateProblem("only fallback_only steps issue a notice", loc=(*here, "notice"), step=s.id)
    for kind in (s.notice, *s.encloses):
        if kind not in DOCUMENT_KINDS:
            raise TemplateProblem(f"unknown document kind '{kind}'", loc=(*here, "encloses" if kind != s.notice
                                  else "notice"), step=s.id, needle=kind)
    if s.notice in s.encloses or len(set(s.encloses)) != len(s.encloses):
        raise TemplateProblem("encloses lists a document twice", loc=(*here, "encloses"), step=s.id)


def _policy(base: PolicyIn, override: PolicyOverrideIn | None) -> Policy:
    values = base.model_dump()
    if override is not None:
        values.update({k: v for k, v in override.model_dump().items() if v is not None})
    return Policy(**values)


def compile_template(raw: dict[str, Any], source: str = "") -> FlowTemplate:
    """Validate parsed template data; raises TemplateProblem for the first thing wrong."""
    t = _shape(raw)
    _check_graph(t)
    steps = tuple(
        StepTemplate(
            id=s.id,
            number=i + 1,
            title=s.title.compile(),
            ask=s.ask.compile(),
            why=s.why.compile(),
            role=s.role,
            kind=s.kind,
            documents=tuple(s.documents),
            depends_on=tuple(s.depends_on),
            deadline_hours=s.deadline_hours,
            required=s.required,
            fallback=s.fallback,
            fallback_only=s.fallback_only,
            policy=_policy(t.policy, s.policy),
            signers=tuple(s.signers),
            fields=tuple(FieldSpec(f.key, f.label.compile(), f.type, f.required,
                                   tuple((o.value, o.label.compile()) for o in f.options)) for f in s.fields),
            replaces=tuple(s.replaces),
            replaces_on=tuple(s.replaces_on),
            outcome_field=s.outcome_field,
            depends_on_outcome=tuple((dep, tuple(v)) for dep, v in s.depends_on_outcome.items()),
            items=tuple(i.compile() for i in s.items),
            hr_fields=tuple(FieldSpec(f.key, f.label.compile(), f.type, f.required) for f in s.hr_fields),
            notice=s.notice,
            encloses=tuple(s.encloses),
        )
        for i, s in enumerate(t.steps)
    )
    return FlowTemplate(
        id=t.id,
        version=t.version,
        title=t.title.compile(),
        case_type=t.case_type,
        policy=_policy(t.policy, None),
        steps=steps,
        source=source,
    )

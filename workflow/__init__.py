"""Offboarding workflow: flow templates (data files) and the pure engine.

    templates = load_templates([company_dir])
    decision = engine.start(templates["probation"], case_id, now)
    result = engine.apply(template, decision.state, Act(...))   # Decision | Refusal
"""

from workflow.decision import Decision, Refusal, RefusalCode
from workflow.documents import DOCUMENT_KINDS, DOCUMENT_TITLES
from workflow.errors import TemplateError
from workflow.model import CaseState, Role, StepKind, StepState
from workflow.template import FieldSpec, FlowTemplate, Policy, StepTemplate
from workflow.text import Text

__all__ = [
    "DOCUMENT_KINDS",
    "DOCUMENT_TITLES",
    "CaseState",
    "Decision",
    "FieldSpec",
    "FlowTemplate",
    "Policy",
    "Refusal",
    "RefusalCode",
    "Role",
    "StepKind",
    "StepState",
    "StepTemplate",
    "TemplateError",
    "Text",
]

"""The transfer module's refusals (handovers, their items, plans, sign-offs): each with its own problem type."""

from __future__ import annotations

from app.core.errors import Conflict, Forbidden, NotAcceptable, NotFound, Unprocessable


class HandoverNotFound(NotFound):
    """No handover with this id, or not within the caller's reach; `handover_ids` lists them for a batch."""

    slug, title = "handover-not-found", "No such handover"


class ItemNotFound(NotFound):
    """No item with this id in the handover."""

    slug, title = "item-not-found", "No such handover item"


class MitigationNotFound(NotFound):
    """A checklist key naming a mitigation the item does not have."""

    slug, title = "mitigation-not-found", "No such mitigation on the item"


class HandoverNotManaged(Forbidden):
    """The caller sees the handover but does not manage it (e.g. another team's manager approving or undoing)."""

    slug, title = "handover-not-managed", "The caller does not manage this handover"


class NotTheApprover(Forbidden):
    """Approving a handover as someone other than the leaver's manager or an admin."""

    slug, title = "not-the-approver", "Only the leaver's manager or an admin may approve"


class TransitionNotAllowed(Conflict):
    """A status change the handover's status does not allow; `allowed` lists the ones it does."""

    slug, title = "transition-not-allowed", "The handover cannot make this status change"


class HandoverNotPlanned(Conflict):
    """Approving a handover that is not planned; only planned handovers are approved."""

    slug, title = "handover-not-planned", "The handover is not planned"


class HandoverNotPlannable(Conflict):
    """Planning a handover whose status no longer allows planning."""

    slug, title = "handover-not-plannable", "The handover cannot be planned in its status"


class HandoverAlreadyOpen(Conflict):
    """Opening a handover for an employee who already has an open one; `handover_id` names it."""

    slug, title = "handover-already-open", "The employee already has an open handover"


class HandoverAlreadyExecuted(Conflict):
    """An HR exit event for an employee whose handover was already executed."""

    slug, title = "handover-already-executed", "The handover was already executed"


class ItemsUnassigned(Conflict):
    """Approving while some items have neither a successor nor an interim owner."""

    slug, title = "items-unassigned", "Some items have neither successor nor interim owner"


class EffectiveTimeNotReached(Conflict):
    """Executing a handover by hand before its effective time."""

    slug, title = "effective-time-not-reached", "The effective time has not come yet"


class UndoWindowPassed(Conflict):
    """Undoing a handover after the undo window."""

    slug, title = "undo-window-passed", "The undo window has passed"


class ItemsLocked(Conflict):
    """Changing an item of a handover that is no longer planned (or draft)."""

    slug, title = "items-locked", "The handover's items can no longer change"


class ChecklistLocked(Conflict):
    """Changing the checklist of a handover that is neither approved nor executed."""

    slug, title = "checklist-locked", "The checklist can no longer change"


class HandoverNotSignable(Conflict):
    """Signing off an item of a handover that is neither approved nor executed."""

    slug, title = "handover-not-signable", "The handover cannot be signed off in its status"


class ItemNotSignable(Conflict):
    """Signing off an item that is cancelled, reverted or closed."""

    slug, title = "item-not-signable", "The item cannot be signed off in its status"


class AlreadySigned(Conflict):
    """Signing a side (outgoing or incoming) that is already signed."""

    slug, title = "already-signed", "This side is already signed"


class NotInvolved(Forbidden):
    """Updating a checklist as someone other than the leaver, the item's receiver or a manager of the handover."""

    slug, title = "not-involved", "The caller is not involved in this item"


class NotTheSigner(Forbidden):
    """Signing a side that someone else signs (the leaver, their manager after the effective time, the successor)."""

    slug, title = "not-the-signer", "The caller does not sign this side"


class SignOffReasonRequired(Unprocessable):
    """A manager signing for the leaver without a reason."""

    slug, title = "sign-off-reason-required", "A reason is required to sign for the leaver"


class UnknownEmployee(Unprocessable):
    """The body names an employee who does not exist (leaver, successor or simulated leavers)."""

    slug, title = "unknown-employee", "The body names an unknown employee"


class LeaverAlreadyDeparted(Unprocessable):
    """Opening a handover for an employee who has already departed."""

    slug, title = "leaver-already-departed", "The leaver has already departed"


class LeaverTwiceInPlan(Unprocessable):
    """A joint plan naming two handovers of the same leaver."""

    slug, title = "leaver-twice-in-plan", "Two handovers of the plan are for the same leaver"


class SuccessorBreaksConstraints(Unprocessable):
    """A successor who breaks hard constraints (leaving, seniority, clearance, load); force=true overrides."""

    slug, title = "successor-breaks-constraints", "The successor breaks hard constraints"


class InterimOwnerInvalid(Unprocessable):
    """An interim owner who is not an employee who stays."""

    slug, title = "interim-owner-invalid", "The interim owner is not valid"


class ReportFormatNotAcceptable(NotAcceptable):
    """A report asked for in a media type it is not available in; `allowed` lists those it is."""

    slug, title = "report-format-not-acceptable", "The report is not available in this format"


# What the HR webhook (intake) answers through the exit workflow bound to transfer in app.main: intake cannot name
# these itself, so the composition root adds them to the webhook's documented responses.


class LeaveInvalid(Unprocessable):
    """A leave that cannot be: no or a wrong return time, an unknown or self delegate, a delegate on leave or leaving
    during it, nobody who can stand in."""

    slug, title = "leave-invalid", "The leave is not valid"


class LeaveNotMovable(Conflict):
    """HR moves the dates of a leave that is no longer scheduled."""

    slug, title = "leave-not-movable", "The leave can no longer be moved"


class LeaveNotStarted(Conflict):
    """Completing a leave before it started: cancel it instead."""

    slug, title = "leave-not-started", "The leave has not started"


class LeaveNotUndoable(Conflict):
    """Undoing a leave: a leave is cancelled while scheduled, or completed, never undone."""

    slug, title = "leave-not-undoable", "A leave is not undone"


class LeaveDuringExit(Conflict):
    """A leave announced while the person has an open handover for an exit."""

    slug, title = "leave-during-exit", "A leave cannot start during an exit"


class TakeoverNotReversible(Conflict):
    """Moving the exit of a leaver who had already departed when the handover opened to a later time, after their
    clients went to the interim owner: nobody can give them back to a departed person, so they stay there."""

    slug, title = "takeover-not-reversible", "The clients are with the interim owner and stay there"


EXIT_WORKFLOW_REFUSALS = (
    HandoverAlreadyExecuted,
    HandoverAlreadyOpen,
    LeaverAlreadyDeparted,
    UnknownEmployee,
    TransitionNotAllowed,
    UndoWindowPassed,
    LeaveInvalid,
    LeaveNotMovable,
    LeaveDuringExit,
    TakeoverNotReversible,
)


class ChecklistIncomplete(Conflict):
    """Signing off an item while a required checklist entry (its tier's template, its mitigations) is open;
    `open_items` names them."""

    slug, title = "checklist-incomplete", "Required checklist entries are still open"


class ConfidentialityLocked(Conflict):
    """Recording a confidentiality step on a cancelled or undone handover."""

    slug, title = "confidentiality-locked", "The handover's confidentiality steps can no longer change"


class RecordNotInHandover(NotFound):
    """No record of this kind and external id among the leaver's records this handover decides on."""

    slug, title = "record-not-in-handover", "The record is not in this handover"


class RecordsLocked(Conflict):
    """Changing what a handover does with records once it was executed (or cancelled, undone, a leave)."""

    slug, title = "records-locked", "The handover's records can no longer change"


class RecordTargetInvalid(Unprocessable):
    """A record override naming someone who cannot hold it: unknown, not active, leaving, or the leaver."""

    slug, title = "record-target-invalid", "The record's new owner is not valid"

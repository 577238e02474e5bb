"""The guided /issue: company → assignee → title → details → confirm, one thumb all the way.

A ConversationHandler per user and chat. Buttons edit the form message in place; typed answers
(title, details, or an agent id) get the next step as a new message. Every step has a Cancel
button (and /cancel works), every step re-checks the person's role, and a form left alone for
`Desk.form_timeout` seconds ends with its message edited into a goodbye, so no live buttons are
left behind. An alert's "File issue" button opens the form with its company already chosen.
The form's state and the question each step asks are in bot.handlers.form.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import args
from bot.access import NEW_MESSAGES, guarded
from bot.desk import Call, Context, Desk, desk_of, edit_html
from bot.handlers.form import (
    _FORMS,
    ASSIGNEE,
    BODY,
    COMPANY,
    CONFIRM,
    TITLE,
    Form,
    _Closed,
    _form,
    _forms,
    ask_assignee,
    ask_body,
    ask_company,
    ask_confirm,
    ask_title,
)
from bot.handlers.issues import file_issue
from bot.roles import Role
from bot.views import cards, render
from bot.views.keyboards import Kind, Press, StaleButton, decode, pattern
from core import Agent, AmbiguousAssignee, Fix, FleetbotError, InvalidInput, format_duration

FORM_PATTERN = pattern(Kind.FORM)
ALERT_FILE_PATTERN = pattern(Kind.ALERT, "fix", Fix.FILE.value)


def _needs_operator(role: Role) -> str:
    return f"Filing issues needs the operator role; you are {role.label}."


@guarded("issue")
async def issue_command(call: Call) -> object:
    """`/issue ASSIGNEE TITLE [| body]` files at once; `/issue` alone opens the form."""
    parsed = args.parse_issue(call.rest)
    if parsed is not None:
        await file_issue(call, parsed)
        return ConversationHandler.END
    call.note("opened the form")
    return await begin(call, call.desk.chat_company(call.chat_id))


async def begin(call: Call, company: str | None) -> int:
    form = Form(call.chat_id or 0)
    _forms(call)[form.chat_id] = form
    if company is None:
        companies = await call.service.companies()
        if len(companies) == 1:
            company = companies[0].id
        elif not companies:
            del _forms(call)[form.chat_id]
            await call.reply("There are no companies to file work for; add them to config.yaml.")
            return ConversationHandler.END
    else:
        form.skip_company = True
    if company is None:
        return await ask_company(call, form)
    found = await call.service.company(company)
    form.company, form.company_name = found.id, found.name
    form.skip_company = True
    return await ask_assignee(call, form)


StepFn = Callable[[Call, Form, Press | None, str], Awaitable[object]]
Handler = Callable[[Update, Context], Coroutine[Any, Any, object]]


def step(name: str, fn: StepFn) -> Handler:
    """Run one form step: re-check the role, find the form, answer the press, audit.

    A refused or closed form ends the conversation; a fleetbot error (an unknown agent, a
    title too long) is told and the form stays at its step.
    """

    async def handler(update: Update, context: Context) -> object:
        user = update.effective_user
        if user is None:
            return None
        call = Call.of(update, context, user.id)
        query = update.callback_query
        message = update.effective_message
        text = "" if query is not None or message is None else message.text or ""
        target = (query.data or "") if query is not None else render.clip(text, 100)
        async with call.audited(f"form.{name}", target) as outcome:
            try:
                if call.role < Role.OPERATOR:
                    outcome.decline("refused", _needs_operator(call.role))
                    _forms(call).pop(call.chat_id or 0, None)
                    if query is None:
                        await call.reply(f"⛔ {render.esc(outcome.answer)}")
                    return ConversationHandler.END
                form = _form(call)
                press = decode(query.data) if query is not None else None
                return await fn(call, form, press, text)
            except _Closed as exc:
                outcome.decline("stale", exc.reason)
                return ConversationHandler.END
            except StaleButton as exc:
                outcome.decline("stale", exc.reason)
                return None
            except FleetbotError as exc:
                outcome.decline(f"error:{exc.code}", exc.message)
                if query is None:
                    await call.reply(f"⚠️ {render.esc(exc.message)}")
                return None

    handler.__name__ = f"form_{name}"
    return handler


async def _pressed(call: Call, form: Form, press: Press | None, text: str) -> object:
    """A form button: pick a company, role or agent, skip, go back, file, or cancel."""
    assert press is not None
    verb = press.verb
    if verb == "cancel":
        return await _cancel(call, form)
    if verb == "back":
        return await _back(call, form)
    if verb == "company" and form.state == COMPANY:
        found = await call.service.company(press.ref)
        form.company, form.company_name = found.id, found.name
        call.note(f"company {found.id}")
        return await ask_assignee(call, form)
    if verb == "role" and form.state == ASSIGNEE:
        holders = [a for a in await call.service.agents(form.company) if a.role == press.ref]
        if not holders:
            raise StaleButton("Nobody has that role any more. Pick again.")
        if len(holders) > 1:
            return await ask_assignee(call, form, holders)
        return await _chose(call, form, holders[0])
    if verb == "agent" and form.state == ASSIGNEE:
        agents = await call.service.agents(form.company)
        agent = next((a for a in agents if press.names(a.id)), None)
        if agent is None:
            raise StaleButton("That agent is no longer in this company. Pick again.")
        return await _chose(call, form, agent)
    if verb == "skip" and form.state == BODY:
        form.body = ""
        return await ask_confirm(call, form)
    if verb == "file" and form.state == CONFIRM:
        return await _file(call, form)
    raise StaleButton("That button belongs to an earlier step of this form.")


async def _chose(call: Call, form: Form, agent: Agent) -> int:
    form.assignee, form.assignee_label = agent.id, f"{agent.name} ({agent.role}, {agent.id})"
    call.note(f"assignee {agent.id}")
    return await ask_title(call, form)


async def _typed_assignee(call: Call, form: Form, press: Press | None, text: str) -> object:
    try:
        agent = await call.service.resolve_assignee(text, form.company)
    except AmbiguousAssignee as exc:
        agents = [a for a in await call.service.agents(form.company) if a.id in exc.choices]
        return await ask_assignee(call, form, agents)
    return await _chose(call, form, agent)


async def _typed_title(call: Call, form: Form, press: Press | None, text: str) -> object:
    title = " ".join(text.split())
    if len(title) > args.MAX_TITLE:
        raise InvalidInput(
            f"keep the title under {args.MAX_TITLE} characters (it has {len(title)}); "
            "type a shorter one"
        )
    form.title = title
    call.note("title")
    return await ask_body(call, form)


async def _typed_body(call: Call, form: Form, press: Press | None, text: str) -> object:
    if len(text) > args.MAX_BODY:
        raise InvalidInput(f"keep the details under {args.MAX_BODY:,} characters; type them again")
    form.body = text.strip()
    call.note("details")
    return await ask_confirm(call, form)


async def _file(call: Call, form: Form) -> int:
    if form.assignee is None or not form.title:
        raise _Closed("This form is incomplete. Send /issue to start again.")
    issue = await call.service.file_issue(
        title=form.title,
        assignee=form.assignee,
        actor=call.actor,
        company=form.company,
        body=form.body,
    )
    _forms(call).pop(form.chat_id, None)
    call.note(f"filed {issue.id}")
    text, keyboard = await cards.issue_card(call.desk, issue, call.role)
    await edit_html(call.update, f"📝 Filed <b>{issue.id}</b>.\n\n{text}", keyboard)
    query = call.update.callback_query
    await cards.link_issue(call.desk, query.message if query is not None else None, issue.id)
    return ConversationHandler.END


async def _cancel(call: Call, form: Form) -> int:
    _forms(call).pop(form.chat_id, None)
    call.note("cancelled")
    text = "✖️ New issue cancelled; nothing was filed."
    if call.update.callback_query is not None:
        await edit_html(call.update, text)
    else:
        await call.reply(text)
    return ConversationHandler.END


async def _cancel_typed(call: Call, form: Form, press: Press | None, text: str) -> object:
    return await _cancel(call, form)


async def _back(call: Call, form: Form) -> int:
    if form.state == CONFIRM:
        return await ask_body(call, form)
    if form.state == BODY:
        return await ask_title(call, form)
    if form.state == TITLE or (form.state == ASSIGNEE and form.picking):
        form.assignee = None
        return await ask_assignee(call, form)
    if form.skip_company:
        raise StaleButton("This is the first step; Cancel closes the form.")
    form.company, form.company_name = None, ""
    return await ask_company(call, form)


async def _alert_entry(update: Update, context: Context) -> object:
    user, query = update.effective_user, update.callback_query
    if user is None or query is None:
        return None
    call = Call.of(update, context, user.id)
    async with call.audited("button.a.fix", query.data or "") as outcome:
        if call.role < Role.OPERATOR:
            outcome.decline("refused", _needs_operator(call.role))
            return None
        try:
            press = decode(query.data)
            try:
                alert = await call.desk.alerts.get(press.ref)
            except FleetbotError:
                raise StaleButton("That alert is gone. Send /issue to file work.") from None
            scope = call.desk.chat_company(call.chat_id)
            companies = [
                m.company_id for m in alert.members_for(scope) if m.active and m.company_id
            ]
            if not companies:
                raise StaleButton(f"Alert #{alert.id} has no open company any more. Send /issue.")
            call.note(f"form from alert #{alert.id}")
            return await begin(call, companies[0])
        except StaleButton as exc:
            outcome.decline("stale", exc.reason)
            return None


async def on_timeout(update: Update, context: Context) -> None:
    """The form sat idle too long: turn its message into a goodbye, drop its state."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None or context.user_data is None:
        return
    desk = desk_of(context)
    form = context.user_data.get(_FORMS, {}).pop(chat.id, None)
    if form is None:
        return
    text = (
        f"⌛ This new-issue form waited {format_duration(desk.form_timeout)} for an answer and "
        "closed; nothing was filed. Send /issue to start again."
    )
    if form.message_id is not None:
        try:
            await context.bot.edit_message_text(
                text, chat.id, form.message_id, parse_mode=ParseMode.HTML
            )
        except TelegramError:
            await context.bot.send_message(chat.id, text, parse_mode=ParseMode.HTML)
    await desk.audit(user.id, "form.timeout", "", "ok", {"chat": chat.id})


def build_form_handler(desk: Desk) -> ConversationHandler[Context]:
    """The /issue conversation; add it before the general button handler."""
    press = CallbackQueryHandler(step("press", _pressed), pattern=FORM_PATTERN)
    typed = NEW_MESSAGES & filters.TEXT & ~filters.COMMAND  # an edited answer is no answer
    states: dict[object, list[BaseHandler[Update, Context, object]]] = {
        COMPANY: [press],
        ASSIGNEE: [press, MessageHandler(typed, step("assignee", _typed_assignee))],
        TITLE: [press, MessageHandler(typed, step("title", _typed_title))],
        BODY: [press, MessageHandler(typed, step("details", _typed_body))],
        CONFIRM: [press],
        ConversationHandler.TIMEOUT: [TypeHandler(Update, on_timeout)],
    }
    with warnings.catch_warnings():
        # PTB warns that with per_message=False a CallbackQueryHandler is not tracked per
        # message. That is intended: one form per user and chat, whatever message is pressed;
        # presses on old form messages are sorted out by the form's own state.
        warnings.filterwarnings("ignore", message=".*per_message=False.*", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[
                CommandHandler("issue", issue_command, filters=NEW_MESSAGES),
                CallbackQueryHandler(_alert_entry, pattern=ALERT_FILE_PATTERN),
            ],
            states=states,
            fallbacks=[
                CommandHandler("cancel", step("cancel", _cancel_typed), filters=NEW_MESSAGES)
            ],
            conversation_timeout=desk.form_timeout,
            allow_reentry=True,
            name="issue_form",
        )

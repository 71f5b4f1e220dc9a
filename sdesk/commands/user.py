"""`sdesk user`: the desk's users, their roles (roles.py) and API tokens for `sdesk serve`."""

from typing import Annotated, Optional

import typer

from .common import Group, note, print_json, settings_of, store_of

app = typer.Typer(cls=Group, name="user", no_args_is_help=True,
                  help="Users and roles (viewer, agent, approver, admin), and API tokens for sdesk serve.\n\n"
                       "Example: sdesk user add alice --role admin --team sre\n\nExample: sdesk user list")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user's name, as they act (--as or their login).")],
    role: Annotated[str, typer.Option("--role", help="viewer, agent, approver or admin.")],
    team: Annotated[Optional[str], typer.Option("--team", help="Their team.", show_default=False)] = None,
    queue: Annotated[Optional[str], typer.Option(
        "--queue", help="Give this role on this queue only (their role elsewhere is unchanged; a new "
        "user's is viewer, or the default role when this role is viewer).",
        show_default=False)] = None,
    login: Annotated[Optional[str], typer.Option(
        "--login", help="Their OS login (on PostgreSQL: their database login), when it is not their name "
        "(the first user's: the login adding them).",
        show_default=False)] = None,
    email: Annotated[Optional[str], typer.Option(
        "--email", help="Their email address: their replies may comment on any ticket, and email channels "
        "reach them there (notify.yaml).", show_default=False)] = None,
    chat: Annotated[Optional[str], typer.Option(
        "--chat", help="Their chat handle (Slack member id U0123, or @name on Mattermost or Teams): chat "
        "channels mention them, and pages reach them there.", show_default=False)] = None,
    manager: Annotated[Optional[str], typer.Option(
        "--manager", help="Their manager (a user): the catalog's `approvers: manager` stages ask them.",
        show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Add a user, or change their role or team. Admins only, except on a desk with no users
    yet, whose first user must be an admin.

    Example: sdesk user add alice --role admin --team sre --email alice@example.com --chat U024BE7LH

    Example: sdesk user add bob --role agent --manager carol
    """
    store = store_of(ctx)
    user = store.users.user_add(name, role=role, team=team, queue=queue, actor=settings_of(ctx).actor,
                                login=login, email=email, chat=chat)
    if manager is not None:
        store.users.set_manager(user["name"], manager=manager or None, actor=settings_of(ctx).actor)
        user["manager"] = store.users.manager_of(user["name"])
    if as_json:
        print_json(user)
        return
    where = f" on queue {queue}" if queue else ""
    from ..domain.plain import controls

    said = controls(f"{user['name']}: {user['queues'][queue] if queue else user['role']}{where}")
    if not user.get("database_sql"):
        print(said)
        return
    # On PostgreSQL, by a login that may not make logins or grant roles: the SQL on stdout (to
    # give an administrator, or pipe to psql), what it is on stderr.
    note(f"{said} on the desk; the database login {store.login} may not create or grant database roles: "
         "an administrator must run the SQL printed on stdout (psql ... -f FILE) for the server to allow it")
    for statement in user["database_sql"]:
        print(statement + ";")


@app.command("remove")
def remove(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The user.")]) -> None:
    """Remove a user (and their API tokens). They then act with the desk's default role.

    Example: sdesk user remove bob
    """
    store = store_of(ctx)
    sql = store.users.user_remove(name, actor=settings_of(ctx).actor)
    note(f"removed {name}")
    if sql:
        note(f"the database login {store.login} may not revoke database roles: an administrator must run the "
             "SQL printed on stdout")
        for statement in sql:
            print(statement + ";")


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The users with their role, roles on particular queues, team and live tokens.

    Example: sdesk user list --json
    """
    store = store_of(ctx)
    users = store.users.users()
    if as_json:
        print_json(users)
        return
    from ..render import table

    table(["user", "role", "queues", "team", "contact", "tokens", "added"],
          [[u["name"], u["role"], ", ".join(f"{q}: {r}" for q, r in u["queues"].items()), u["team"] or "",
            " ".join(filter(None, (u["email"], u["chat"]))) or "(none)", u["tokens"] or "", u["added_at"][:10]]
           for u in users],
          empty=f"no users: everyone acts as admin (default role once there are users: {store.default_role})")


@app.command("token")
def token(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user the integration acts as.")],
    label: Annotated[Optional[str], typer.Option("--label", help="What uses it (e.g. alertmanager-prod).",
                                                 show_default=False)] = None,
) -> None:
    """Make an API token for sdesk serve: requests with it act as NAME, with NAME's role. It is
    printed once (only its hash is kept). Admins only.

    Example: sdesk user token alertmanager --label prod-cluster
    """
    token_id, secret = store_of(ctx).users.token_add(name, label=label, actor=settings_of(ctx).actor)
    note(f"token {token_id} for {name}: keep it now, it is not shown again")
    print(secret)


@app.command("tokens")
def tokens(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """API tokens: id, user, label, and whether revoked (never the token itself).

    Example: sdesk user tokens
    """
    rows = store_of(ctx).users.tokens()
    if as_json:
        print_json(rows)
        return
    from ..render import table

    table(["id", "user", "label", "created", "revoked"],
          [[t["id"], t["user"], t["label"] or "", t["created_at"][:16], (t["revoked_at"] or "")[:16]] for t in rows],
          empty="no API tokens")


@app.command("revoke")
def revoke(ctx: typer.Context, token_id: Annotated[int, typer.Argument(
        help="The token's id (sdesk user tokens).", min=1, max=2**63 - 1)]) -> None:
    """Revoke an API token: sdesk serve refuses it within two seconds. Admins only.

    Example: sdesk user revoke 3
    """
    store_of(ctx).users.token_revoke(token_id, actor=settings_of(ctx).actor)
    note(f"revoked token {token_id}")

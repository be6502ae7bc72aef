"""The server's commands: one table, a row per command with the rules around its handler.

Ergo's irc/commands.go is the model. Dispatch (Session.handle) reads a command's row:
may it come before registration, how many parameters it needs, whether its replies
include relays to the sender itself (with labeled-response it then runs under the
registry lock, so the labeled batch keeps its place among what the others see), and
its HELP text. Adding a command is one handler, in the module of its family, and one
row here.

Families: rooms.py, messages.py, queries.py, modes.py, history.py, info.py, and the
IRCv3 extras monitor.py, redact.py, readmarker.py, search.py (soju's SEARCH) and
multiline.py (a client's draft/multiline BATCH). The connection's own commands (CAP,
PASS, NICK, USER, PING, PONG, QUIT) are Session's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from chatroom.protocol import Message

if TYPE_CHECKING:
    from chatroom.server.session import Session

Handler = Callable[["Session", Message], None]


class Command(NamedTuple):
    """One row of the table."""

    handler: Handler  # handler(session, msg); raises IRCError to answer with a numeric
    min_params: int = 0  # fewer: 461 ERR_NEEDMOREPARAMS, and the handler is not called
    before_registration: bool = False  # else 451 ERR_NOTREGISTERED until registered
    relays: bool = False  # what it sends this client includes relays (JOIN, NICK...)
    help: str | None = None  # HELP <command>; None: 524 ERR_HELPNOTFOUND


# command -> its row. Made before session.py is imported below: session.py imports it
# back at its end (it dispatches through it), whichever of the two is imported first.
COMMANDS: dict[str, Command] = {}

from chatroom.server.commands import (  # noqa: E402
    accounts,
    history,
    info,
    messages,
    modes,
    monitor,
    multiline,
    queries,
    readmarker,
    redact,
    rooms,
    search,
    services,
)
from chatroom.server.session import Session  # noqa: E402

COMMANDS.update(
    {
        # the connection's own (session.py)
        "CAP": Command(Session.cmd_cap, 1, before_registration=True),
        "PASS": Command(Session.cmd_pass, 1, before_registration=True),
        "NICK": Command(
            Session.cmd_nick,
            0,
            before_registration=True,
            relays=True,
            help="NICK <newnick> -- change your nickname",
        ),
        "USER": Command(Session.cmd_user, 4, before_registration=True),
        "PING": Command(Session.cmd_ping, 0, before_registration=True),
        "PONG": Command(Session.cmd_pong, 0, before_registration=True),
        "QUIT": Command(
            Session.cmd_quit,
            0,
            before_registration=True,
            help="QUIT [:message] -- leave the server",
        ),
        # rooms
        "JOIN": Command(
            rooms.join,
            1,
            relays=True,
            help="JOIN #room[,#room2] [key[,key2]] -- enter rooms (JOIN 0 leaves all)",
        ),
        "PART": Command(
            rooms.part, 1, relays=True, help="PART #room[,#room2] [:reason] -- leave rooms"
        ),
        "NAMES": Command(rooms.names, 0, help="NAMES [#room] -- who is in a room"),
        "TOPIC": Command(
            rooms.topic,
            1,
            relays=True,
            help="TOPIC #room [:new topic] -- show or set a room's topic",
        ),
        "LIST": Command(
            rooms.list_, 0, help="LIST [#room,...] -- rooms with their member counts and topics"
        ),
        "KICK": Command(
            rooms.kick,
            2,
            relays=True,
            help="KICK #room nick [:reason] -- remove someone (room operators)",
        ),
        "INVITE": Command(rooms.invite, 2, help="INVITE nick #room -- invite someone into a room"),
        # messages
        "PRIVMSG": Command(
            messages.privmsg,
            0,
            relays=True,
            help="PRIVMSG <#room|nick>[,...] :text -- say something",
        ),
        "NOTICE": Command(
            messages.notice,
            0,
            relays=True,
            help="NOTICE <#room|nick> :text -- say something that gets no automatic reply",
        ),
        "TAGMSG": Command(messages.tagmsg, 0, relays=True),
        # a client's draft/multiline batch (its lines go to multiline.absorb, not here)
        "BATCH": Command(multiline.batch, 1),
        # not relays=True: it reads the history before it relays (not under the lock)
        "REDACT": Command(
            redact.redact,
            2,
            help="REDACT <#room|nick> <msgid> [:reason] -- delete a message (yours, or as"
            " a room operator any in the room)",
        ),
        "MARKREAD": Command(
            readmarker.markread,
            0,
            help="MARKREAD <#room|nick> [timestamp=YYYY-MM-DDThh:mm:ss.sssZ] -- how far you"
            " have read",
        ),
        # queries and what a user says of itself
        "WHO": Command(queries.who, 0, help="WHO <#room|mask> [o] -- details of matching users"),
        "WHOIS": Command(queries.whois, 1, help="WHOIS <nick> -- details of one user"),
        "WHOWAS": Command(
            queries.whowas, 1, help="WHOWAS <nick> [count] -- who recently used a nickname"
        ),
        "USERHOST": Command(queries.userhost, 1),
        "ISON": Command(queries.ison, 1),
        "MONITOR": Command(
            monitor.monitor,
            1,
            help="MONITOR <+|-> nick[,nick2] | C | L | S -- be told when those nicks come and go",
        ),
        "AWAY": Command(
            queries.away,
            0,
            relays=True,
            help="AWAY [:message] -- mark yourself away (no message: back)",
        ),
        "SETNAME": Command(
            queries.setname,
            1,
            relays=True,
            help="SETNAME :realname -- change your real name (shown by WHO and WHOIS)",
        ),
        # modes
        "MODE": Command(
            modes.mode,
            1,
            relays=True,
            help="MODE <#room|nick> [+-modes [params]] -- room: imnst k l o v b e I; user: i w",
        ),
        # history
        "CHATHISTORY": Command(history.chathistory, 1),
        "SEARCH": Command(
            search.search,
            1,
            help="SEARCH text=words[;in=#room|nick][;from=nick][;after=T][;before=T][;limit=N]"
            " -- search the history of your rooms and private messages",
        ),
        # accounts
        "AUTHENTICATE": Command(accounts.authenticate, 1, before_registration=True),
        "REGISTER": Command(
            accounts.register,
            3,
            before_registration=True,
            help="REGISTER <account> * <password> -- make an account of your nick",
        ),
        "NICKSERV": Command(
            services.nickserv, 0, help="NICKSERV <command> -- the same as /msg NickServ"
        ),
        "NS": Command(services.nickserv, 0, help="NS <command> -- the same as /msg NickServ"),
        "CHANSERV": Command(
            services.chanserv, 0, help="CHANSERV <command> -- the same as /msg ChanServ"
        ),
        "CS": Command(services.chanserv, 0, help="CS <command> -- the same as /msg ChanServ"),
        # operators and server information
        "OPER": Command(info.oper, 2, help="OPER <name> <password> -- become a server operator"),
        "KILL": Command(info.kill, 1, help="KILL <nick> :reason -- disconnect a user (operators)"),
        "WALLOPS": Command(
            info.wallops,
            1,
            relays=True,
            help="WALLOPS :text -- message all operators and +w users (operators)",
        ),
        "MOTD": Command(info.motd, 0),
        "LUSERS": Command(info.lusers, 0),
        "VERSION": Command(info.version, 0),
        "TIME": Command(info.time_, 0),
        "INFO": Command(info.info, 0),
        "HELP": Command(info.help_, 0),
    }
)

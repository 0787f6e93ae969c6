"""The role sets every part asks about, named once (the policy table is in README.md, "Who sees what")."""

from __future__ import annotations

from models.db.tables import Role

#: the command centre: sees every camera and ticket, configures cameras and zones, dismisses false alarms
CENTRE = frozenset({Role.admin, Role.operator})
#: see only what their assignments (and grants) cover
SCOPED = frozenset({Role.manager, Role.grid_leader, Role.patroller})
#: may borrow a camera through a time-bounded grant
GRANTEES = frozenset({Role.grid_leader, Role.patroller})
#: may lend cameras (managers inside their subtree)
LENDERS = frozenset({Role.admin, Role.manager})
#: dispatch, verify, close and reopen tickets
TICKET_SUPERVISORS = frozenset({Role.admin, Role.operator, Role.manager})
#: accept, reject and resolve tickets
TICKET_HANDLERS = frozenset({Role.admin, Role.manager, Role.grid_leader})
#: functional departments' users: handle their parts (协办) of tickets, see a part's camera while it is open
DEPARTMENT = frozenset({Role.department})
#: report cases and police clues from the field
REPORTERS = frozenset({Role.admin, Role.operator, Role.manager, Role.grid_leader, Role.patroller})

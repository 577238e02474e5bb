"""The store: the only place with SQL. One SQLite file (core.store.db), its migrations (schema),
rows into records (rows), and one module of statements per concept:

    issues      issues, comments, leases, and the one "workable" rule
    agents      agents: lookups, every status change, the heartbeat schedule
    heartbeats  heartbeat counters and empty-queue streaks
    runs        runs: opened, fed with usage, ended once
    summaries   what agents post for their team chat
    questions   agents' questions about their issues, answered from the phone
    links       which sent message shows which issue or question (what a reply is about)
    companies   companies (written by sync)
    sync        the config into the store
    audit       the audit log
    recovery    what the core did on its own: loops stopped, escalations, auto-resets, budgets
    alerts      alerts, their members, mutes
    outbox      the outbox, delivered messages, recipients
    reports     the group-by queries behind core.reports
    instance    the lock that keeps a second `fleetbot run` off the file

Statements run on the connection they are given: the writer inside `Database.write()`, where
they join the caller's transaction, or the reader.
"""

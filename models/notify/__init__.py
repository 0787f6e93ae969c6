"""Notifications to people's phones: preferences, channels, messages and the delivery outbox.

Senders (WeCom and DingTalk robots, SMTP, an SMS gateway) run in ``gridpatrol/notify*.py``; this package
decides who is told what, keeps it in the outbox in the transaction of the change, and renders the text.
"""

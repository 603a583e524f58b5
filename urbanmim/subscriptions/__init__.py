"""Context subscriptions (clause 5.8): the Subscription model; delivery comes with the notifier."""

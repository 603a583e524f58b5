"""MIM4: personal data and consent (marking, DPV-purpose consents, the consent decider, subject rights)."""

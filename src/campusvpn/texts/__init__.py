"""User-visible texts in English and Japanese: one gettext catalogue for every front end (portal,
VPN clients' error boxes, SMS, voice and e-mail), keyed by stable codes the lower layers return."""

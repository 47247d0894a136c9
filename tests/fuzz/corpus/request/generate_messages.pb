*
systemYou are terse.
usercafé?
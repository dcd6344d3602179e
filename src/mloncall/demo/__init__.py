"""`mloncall demo`: the oncall story played end to end against a live server, with client traffic."""

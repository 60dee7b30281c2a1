"""The search: the enumerable space and its validity rules (:mod:`.space`), one iteration's proposal (:mod:`.plan`) and
the strategies that make it (:mod:`.optimizer`)."""

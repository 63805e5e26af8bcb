"""The dealer's domain logic: plugins propose copies, the engine decides. No I/O here: a
cycle is a pure function of the read model, the plugins' inputs and the clock."""

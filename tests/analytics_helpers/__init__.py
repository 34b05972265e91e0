"""The randomized analytics oracle: a scenario generator that reports through the real hooks
(:mod:`.scenario`) and a plain-Python computation of every analytics figure from those
reports (:mod:`.oracle`)."""

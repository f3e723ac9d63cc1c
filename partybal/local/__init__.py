"""The local stack: emulators, functions-framework, a Cloud Run stand-in and helpers for running
partybal on one machine (``partybal local up``, ``partybal preview``). Never deployed."""

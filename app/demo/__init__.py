"""The demo: a synthetic company (`company`) and the scripted handover that `handover demo` runs (`run`)."""

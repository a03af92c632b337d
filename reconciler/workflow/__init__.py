"""What each command does, apart from how it is asked for (typer, in reconciler/cli.py).

    interaction  the seam to the person: output, notes, confirmation, progress (injected)
    session      manifests loaded and the target opened; plan, preflight and call counts
    plan         plan (and save) what apply would do
    apply        apply manifests or a saved plan: guards, confirmation, steps, report, verification
    drift        what changed out of band
    export       the live estate written as manifests

A workflow takes an options value and an `Interaction`, raises `ReconcilerError`s, and returns
what the CLI turns into an exit code; it never imports typer and never exits the process.
"""

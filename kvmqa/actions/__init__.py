"""Install actions: idempotent steps, each with a precondition read from facts (see kvmqa.actions.base).

kvmqa.actions.hook is the pytest plugin that runs them in install mode (--mode install) or plans them (--plan).
"""

"""Name -> object registries, so that a YAML file can pick components by name."""


class Registry:
    """A named table of classes or functions filled by the ``@REGISTRY.register()`` decorator.

    Projects register their own components into the core registries; ``get`` fails with the
    list of every registered name so that a typo in a config is found at once.
    """

    def __init__(self, name):
        self._name = name
        self._obj_map = {}

    def _do_register(self, name, obj):
        if name in self._obj_map and self._obj_map[name] is not obj:
            raise KeyError(f"'{name}' is already registered in the {self._name} registry")
        self._obj_map[name] = obj

    def register(self, obj=None, name=None):
        """Use as ``@REG.register()``, ``@REG.register(name="x")`` or ``REG.register(obj)``."""
        if obj is None:
            def decorator(func_or_class):
                self._do_register(name or func_or_class.__name__, func_or_class)
                return func_or_class
            return decorator
        self._do_register(name or obj.__name__, obj)
        return obj

    def get(self, name):
        if name not in self._obj_map:
            known = ", ".join(sorted(self._obj_map)) or "(none)"
            raise KeyError(
                f"No object named '{name}' in the {self._name} registry. Registered: {known}. "
                "If it comes from a project, list the project module in the config's IMPORTS."
            )
        return self._obj_map[name]

    def __contains__(self, name):
        return name in self._obj_map

    def names(self):
        return sorted(self._obj_map)

from .config import (
    check_config,
    config_value_problems,
    get_cfg,
    import_projects,
    load_config,
    read_imports,
    register_config_check,
    register_config_extension,
)
from .node import CfgNode, ConfigError

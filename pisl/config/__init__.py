from .config import (
    CfgNode,
    ConfigError,
    get_cfg,
    import_projects,
    load_config,
    read_imports,
    check_config,
    config_value_problems,
    register_config_check,
    register_config_extension,
)

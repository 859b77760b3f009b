from .config import (
    CfgNode,
    ConfigError,
    get_cfg,
    import_projects,
    load_config,
    read_imports,
    register_config_extension,
)

from .config import (
    CfgNode,
    ConfigError,
    get_cfg,
    import_projects,
    read_imports,
    register_config_extension,
)

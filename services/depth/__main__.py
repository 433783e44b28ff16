from renderkit.settings import refuse_bad_settings
from services.common.stage import StageSettings, run_stage
from services.depth.server import create_server


@refuse_bad_settings("depth")
def main() -> None:
    settings = StageSettings.from_env("DEPTH", 50062)
    run_stage("depth", lambda: create_server(settings), settings.grace_seconds)


if __name__ == "__main__":
    main()

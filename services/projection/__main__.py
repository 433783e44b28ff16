from renderkit.settings import refuse_bad_settings
from services.common.stage import StageSettings, run_stage
from services.projection.server import create_server


@refuse_bad_settings("projection")
def main() -> None:
    settings = StageSettings.from_env("PROJECTION", 50063)
    run_stage("projection", lambda: create_server(settings), settings.grace_seconds)


if __name__ == "__main__":
    main()

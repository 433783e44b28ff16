from renderkit.settings import refuse_bad_settings
from services.common.stage import StageSettings, run_stage
from services.segmentation.server import create_server


@refuse_bad_settings("segmentation")
def main() -> None:
    settings = StageSettings.from_env("SEGMENTATION", 50061)
    run_stage("segmentation", lambda: create_server(settings), settings.grace_seconds)


if __name__ == "__main__":
    main()

from renderkit.settings import refuse_bad_settings
from services.common.stage import run_stage
from services.generation.server import GenerationSettings, create_server


@refuse_bad_settings("generation")
def main() -> None:
    settings = GenerationSettings.from_env()
    run_stage("generation", lambda: create_server(settings), settings.stage.grace_seconds)


if __name__ == "__main__":
    main()

from services.common.stage import run_stage
from services.generation.server import GenerationSettings, create_server

if __name__ == "__main__":
    settings = GenerationSettings.from_env()
    run_stage("generation", lambda: create_server(settings), settings.stage.grace_seconds)

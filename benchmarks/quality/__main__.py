from benchmarks.quality.report import main

main()

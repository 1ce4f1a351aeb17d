from offerd.cli.main import main

raise SystemExit(main())

from tcpstack.cli import main

raise SystemExit(main())

module pictor.network/e2e/pause

go 1.24

build-me-asan/src/cli/cli.o: src/cli/cli.c src/core/banned.h \
 src/cli/cli.h src/core/paths.h src/cli/cli_internal.h src/core/strbuf.h \
 src/core/version.h src/compat/http.h src/compat/json.h src/core/util.h
src/core/banned.h:
src/cli/cli.h:
src/core/paths.h:
src/cli/cli_internal.h:
src/core/strbuf.h:
src/core/version.h:
src/compat/http.h:
src/compat/json.h:
src/core/util.h:

build-me/src/cli/cli_commands.o: src/cli/cli_commands.c src/core/banned.h \
 src/cli/cli_internal.h src/core/strbuf.h src/core/version.h \
 src/compat/http.h src/compat/json.h src/core/timeutil.h src/core/util.h \
 src/spec/spec.h
src/core/banned.h:
src/cli/cli_internal.h:
src/core/strbuf.h:
src/core/version.h:
src/compat/http.h:
src/compat/json.h:
src/core/timeutil.h:
src/core/util.h:
src/spec/spec.h:

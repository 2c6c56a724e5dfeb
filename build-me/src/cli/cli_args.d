build-me/src/cli/cli_args.o: src/cli/cli_args.c src/core/banned.h \
 src/cli/cli_internal.h src/core/strbuf.h src/core/version.h \
 src/compat/json.h src/core/util.h
src/core/banned.h:
src/cli/cli_internal.h:
src/core/strbuf.h:
src/core/version.h:
src/compat/json.h:
src/core/util.h:

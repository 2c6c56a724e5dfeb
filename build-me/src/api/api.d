build-me/src/api/api.o: src/api/api.c src/core/banned.h \
 src/api/api_internal.h src/api/api.h src/auth/auth.h src/compat/http.h \
 src/core/strbuf.h src/compat/json.h src/core/log.h src/core/paths.h \
 src/core/timeutil.h src/core/util.h
src/core/banned.h:
src/api/api_internal.h:
src/api/api.h:
src/auth/auth.h:
src/compat/http.h:
src/core/strbuf.h:
src/compat/json.h:
src/core/log.h:
src/core/paths.h:
src/core/timeutil.h:
src/core/util.h:

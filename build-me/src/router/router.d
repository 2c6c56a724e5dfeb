build-me/src/router/router.o: src/router/router.c src/core/banned.h \
 src/router/router_internal.h src/router/router.h src/compat/crypto.h \
 src/compat/json.h src/core/log.h src/core/util.h
src/core/banned.h:
src/router/router_internal.h:
src/router/router.h:
src/compat/crypto.h:
src/compat/json.h:
src/core/log.h:
src/core/util.h:

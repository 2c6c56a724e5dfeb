build-me-asan/src/router/router_balance.o: src/router/router_balance.c \
 src/core/banned.h src/router/router_internal.h src/router/router.h \
 src/core/util.h
src/core/banned.h:
src/router/router_internal.h:
src/router/router.h:
src/core/util.h:


c
req-1
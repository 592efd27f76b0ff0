/* fetch.h - placeholder; the fetch module defines this interface. */

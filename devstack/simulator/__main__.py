from devstack.simulator import main

main()

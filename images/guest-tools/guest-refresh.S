# vmharness-refresh: run in a guest right after a snapshot is restored or cloned.
# stdin: 64 bytes of host entropy, then (after this program prints "R") 16 bytes: a struct
# timespec (seconds, nanoseconds; little-endian 64-bit) of the host's clock.
# It credits the entropy to the kernel's pool and forces the CRNG to reseed from it, so no two
# restores of one snapshot share random output, then sets CLOCK_REALTIME to the nanosecond.
# Exit codes: 0 done; 2/7 short read; 3 open /dev/random; 4 RNDADDENTROPY; 5 RNDRESEEDCRNG;
# 6 write; 8 clock_settime.
.intel_syntax noprefix
.globl _start
.text
_start:
    lea rsi, [rip + entropy]
    mov edx, 64
    mov ebx, 2
    call read_exactly
    mov eax, 2                      # open("/dev/random", O_WRONLY)
    lea rdi, [rip + random_path]
    mov esi, 1
    xor edx, edx
    syscall
    mov ebx, 3
    test rax, rax
    js fail
    mov r12, rax
    mov dword ptr [rip + pool_info], 512      # entropy_count, in bits
    mov dword ptr [rip + pool_info + 4], 64   # buf_size, in bytes
    mov eax, 16                     # ioctl(fd, RNDADDENTROPY, &pool_info)
    mov rdi, r12
    mov esi, 0x40085203
    lea rdx, [rip + pool_info]
    syscall
    mov ebx, 4
    test rax, rax
    jnz fail
    mov eax, 16                     # ioctl(fd, RNDRESEEDCRNG)
    mov rdi, r12
    mov esi, 0x5207
    xor edx, edx
    syscall
    mov ebx, 5
    test rax, rax
    jnz fail
    mov eax, 1                      # write(1, "R", 1)
    mov edi, 1
    lea rsi, [rip + ready]
    mov edx, 1
    syscall
    mov ebx, 6
    cmp rax, 1
    jne fail
    lea rsi, [rip + now]
    mov edx, 16
    mov ebx, 7
    call read_exactly
    mov eax, 227                    # clock_settime(CLOCK_REALTIME, &now)
    xor edi, edi
    lea rsi, [rip + now]
    syscall
    mov ebx, 8
    test rax, rax
    jnz fail
    xor ebx, ebx
fail:
    mov eax, 60                     # exit(ebx)
    mov edi, ebx
    syscall

# Reads rdx bytes from stdin to rsi; exits with code ebx on EOF or error.
read_exactly:
    test rdx, rdx
    jz 1f
    xor eax, eax
    xor edi, edi
    syscall
    test rax, rax
    jle fail
    add rsi, rax
    sub rdx, rax
    jmp read_exactly
1:
    ret

random_path: .asciz "/dev/random"
ready: .ascii "R"

.bss
.align 8
pool_info: .skip 8
entropy: .skip 64
now: .skip 16
